"""Numerical kernels of the engine (no ObsPy, no I/O).

Modules
-------
wavelets
    Morlet wavelets, superlet orders and the cached bank of wavelet spectra.
superlet_cpu
    FFT-based superlet transform on the CPU (SciPy pocketfft + Numba).
superlet_gpu
    The same maths for CUDA (CuPy cuFFT + fused Numba CUDA kernels), written
    against an array module ``xp`` so that it also runs on NumPy.
"""
