"""Published Kodak rate-distortion points of CompressAI's pretrained models, typed in as reference curves.

Source: InterDigitalInc/CompressAI, results/image/kodak/compressai-bmshj2018-hyperprior_mse_cpu.json and
compressai-mbt2018-mean_mse_cpu.json (commit 128f00397509b9882aaaeea49f43f1714da083b4), quality 1..8.
Their bpp counts the entropy-coded strings only (no container header); ours include the header.
"""
from __future__ import annotations

PUBLISHED_KODAK = {
    "bmshj2018-hyperprior (CompressAI, published)": {
        "bpp": [0.13129, 0.20889, 0.31986, 0.47836, 0.66868, 0.93883, 1.25917, 1.66022],
        "psnr-rgb": [27.5815, 29.1967, 30.9722, 32.8382, 34.5262, 36.7434, 38.5839, 40.5569],
        "ms-ssim-rgb": [0.91737, 0.94206, 0.96106, 0.97487, 0.98356, 0.98925, 0.99287, 0.99549],
    },
    "mbt2018-mean (CompressAI, published)": {
        "bpp": [0.12392, 0.19798, 0.30724, 0.46061, 0.66167, 0.91440, 1.23421, 1.61909],
        "psnr-rgb": [27.6995, 29.3588, 31.1289, 32.9507, 34.9683, 36.9111, 38.8375, 40.6333],
        "ms-ssim-rgb": [0.91784, 0.94306, 0.96149, 0.97520, 0.98358, 0.98925, 0.99305, 0.99535],
    },
}
