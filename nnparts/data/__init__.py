"""Data: datasets (IDX, Fashion-MNIST, MNIST, toy sets), loader, preprocessing, augmentation.

Images are NumPy arrays; Tensors appear only at the model boundary::

    from nnparts import data

    x, y = data.load("fashion-mnist", "train")            # uint8 (60000, 1, 28, 28), int64
    x_tr, y_tr, x_val, y_val = data.train_val_split(x, y, val_size=5000, seed=0)
    scaler = data.Standardize(mode="channel").fit(data.to_float(x_tr))   # training data only
    aug = data.build_augmentation([{"name": "hflip"}, {"name": "random_erasing"}], seed=0)
    for xb, yb in data.DataLoader(x_tr, y_tr, batch_size=128, seed=0):
        xb = scaler.transform(aug(data.to_float(xb)))
"""

from nnparts.data.augment import *
from nnparts.data.datasets import *
from nnparts.data.download import DatasetNotFoundError, download_dataset
from nnparts.data.idx import *
from nnparts.data.loader import *
from nnparts.data.preprocessing import *
from nnparts.data.split import *
from nnparts.data.toy import *
