//! What the pipeline tells people: the job summary (and, later, parsed linter findings).

pub mod summary;
