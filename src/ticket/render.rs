//! TODO: rendering (helper)
