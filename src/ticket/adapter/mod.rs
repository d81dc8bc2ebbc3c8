//! TODO: adapters (helper)
