"""Files of arrays: reading .npy, .npz and .csv with located errors, and writing outputs
atomically."""
