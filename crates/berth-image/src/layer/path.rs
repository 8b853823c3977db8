//! Entry name normalisation.
