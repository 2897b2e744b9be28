//! WinDivert backend (Windows only).
