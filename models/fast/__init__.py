"""The encoder's speed machinery, fenced off from the model code: oneDNN linear layers, seeded
dropout from random bits, row blocks side by side, and the native C kernels (`native.c`)."""
