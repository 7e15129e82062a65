"""Upper bounds on what a recipe may ask for, checked at load before anything is allocated."""

MAX_INPUT_PIXELS = 4096 * 4096  # a model input larger than this is a mistake, not a model
# counts that size an allocation or a list, or start threads: far past any real recipe, short
# of exhausting a machine (`threads: 100000` started threads until Python could start no more;
# `epochs` sizes per-epoch lists). What the machine can hold is checked again at run time
# (runtime.device.set_threads, train.budget).
MAX_THREADS = 1024
MAX_BATCH = 65_536
MAX_EPOCHS = 10_000
MAX_RANDOM_CROP = 1024  # pixels of padding on each side
MAX_CUTOUT = 4096  # the side of the blanked square
MAX_SEED = 2**32 - 1
