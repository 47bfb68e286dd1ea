//! mlx-nn
