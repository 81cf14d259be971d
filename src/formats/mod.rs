//! Readers and writers of the artifact formats (npy, pickle, torch .pt).
