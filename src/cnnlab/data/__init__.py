"""Data: sources read into in-memory uint8 tensors, splits, preprocessing, augmentation."""

from cnnlab.data.dataset import ImageData, LoadedData
from cnnlab.data.prepare import PreparedData, prepare_data
from cnnlab.data.preprocess import Preprocess
from cnnlab.data.sources import load_source

__all__ = ["ImageData", "LoadedData", "PreparedData", "Preprocess", "load_source", "prepare_data"]
