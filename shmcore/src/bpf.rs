//! Classic BPF: validation and interpretation (in progress).
