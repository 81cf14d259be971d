//! Image datasets (ImageFolder) and CLIP preprocessing.
