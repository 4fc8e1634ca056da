//! Family detection (placeholder, being written).
