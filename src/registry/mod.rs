//! Container images: tag rules (and, in later versions, references, promotion and pruning).

pub mod tags;
