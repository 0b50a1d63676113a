"""Write a few test images as PNG files that look like scans or product photos: dark on white, 112x112.

They go through the server's image preparation for their model (MNIST: invert, crop, scale, centre;
Fashion-MNIST: trim, fit, centre, negate), so the demo shows the path a phone photo or a canvas drawing
takes. File names carry the true class. Usage: sample_digits.py DATA_DIR OUT_DIR [COUNT [CLASS_NAMES]]
with CLASS_NAMES a comma-separated list (default: the digits).
"""

import sys
from pathlib import Path

from PIL import Image

from mnist_serving.idx import read_idx


def main() -> int:
    data_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    names = sys.argv[4].split(",") if len(sys.argv) > 4 else [str(digit) for digit in range(10)]
    images = read_idx(data_dir / "t10k-images-idx3-ubyte.gz", count=count)
    labels = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz", count=count)
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, (pixels, label) in enumerate(zip(images, labels)):
        scan = Image.fromarray(255 - pixels).resize((112, 112), Image.BICUBIC)
        true_name = names[int(label)].replace("/", "-").replace(" ", "-")
        scan.save(out_dir / f"test{index:02d}-true{true_name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
