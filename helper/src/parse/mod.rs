//! Pure parsers of the package tools' output (placeholder, being written).
