"""Distilled networks: a student trained on a teacher's softened outputs (Hinton et al.,
2015), optionally also to match the teacher's activations at chosen cut points (hints, as in
FitNets, Romero et al., 2015) through a stitch-like adapter trained with it.

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
           + (1 - alpha) * cross-entropy(student, labels)
           + beta * sum over hints of MSE(adapter(student at its point), teacher at its point)

T^2 keeps the soft term's gradients at the scale of the hard term's as T changes (Hinton et
al.). The training loop, data pipeline, augmentation and seeding are plato.train's: with
alpha 0 and no hints a distillation is plain training, step for step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plato.data.datasets import Dataset
from plato.data.loader import Augment, DeviceLoader
from plato.device import resolve_device
from plato.errors import PlatoError, SettingError
from plato.models import cut_graph
from plato.settings import check_numbers
from plato.stitch import Stitch
from plato.stitch.registry import resolve_stitch
from plato.train import Recipe, TrainResult, evaluate, train


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 4.0  # softens both networks' logits in the soft loss (> 0)
    alpha: float = 0.9  # weight of the soft loss in [0, 1]; 1 - alpha weights the labels
    features: tuple[tuple[str, str], ...] = ()  # hints: (student point, teacher point), ...
    beta: float = 1.0  # weight of the hints' loss (>= 0)
    adapter: str = "conv1x1"  # the stitch type mapping the student's point to the teacher's

    def __post_init__(self) -> None:
        for name, low, high in (("temperature", 0, None), ("alpha", 0, 1), ("beta", 0, None)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < low \
                    or (high is not None and value > high) or (name == "temperature"
                                                              and value == 0):
                bounds = {"temperature": "a positive number", "alpha": "a number in [0, 1]",
                          "beta": "a number >= 0"}[name]
                raise SettingError(name, f"distill {name} must be {bounds}, got {value!r}")
        check_numbers(self, "distill", {"temperature": (0, 1e4), "beta": (0, 1e6)})
        try:
            resolve_stitch(self.adapter)
        except PlatoError as e:
            raise SettingError("adapter", f"distill adapter: {e}") from None
        hints = tuple(tuple(h) if isinstance(h, list | tuple) else h for h in self.features)
        if not all(isinstance(h, tuple) and len(h) == 2 for h in hints):
            raise SettingError("features", "distill features are [student point, teacher "
                               f"point] pairs, got {list(self.features)!r}")
        object.__setattr__(self, "features", hints)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["features"] = [list(h) for h in self.features]
        return out


@dataclass
class Distilled:
    model: nn.Module  # the student, trained
    config: DistillConfig
    result: TrainResult
    teacher_accuracy: float
    # each hint's mean squared gap on test images, adapter(student) vs teacher: before, after
    hint_gaps: dict[str, tuple[float, float]]

    def to_dict(self) -> dict:
        return {**self.config.to_dict(), "teacher_accuracy": self.teacher_accuracy,
                "student_accuracy": self.result.test_accuracy,
                "hint_gaps": {k: list(v) for k, v in self.hint_gaps.items()}}


def soft_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T), averaged over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                    reduction="batchmean", log_target=True) * t * t


def distill(student: nn.Module, teacher: nn.Module, dataset: Dataset, config: DistillConfig,
            recipe: Recipe, progress: bool = False) -> Distilled:
    """Train `student` in place on `dataset` from `teacher` (left as it is: eval mode, no
    gradient). The recipe is plato.train's; its label smoothing applies to the hard term."""
    device = resolve_device(recipe.device)
    teacher.to(device)
    was_training = teacher.training
    teacher.eval()
    hints = config.features
    student_net, teacher_net, adapters = student, teacher, None
    if hints:
        student_net, teacher_net, adapters = _hinted(student, teacher, config)
        adapters.to(device)
    gaps_before = _hint_gaps(student_net, teacher_net, adapters, hints, dataset, device)

    def objective(model, x, y):
        with torch.no_grad():
            taught = teacher_net(x)
        logits, feats = student_net(x) if hints else (model(x), {})
        teacher_logits, teacher_feats = taught if hints else (taught, {})
        loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
        if config.alpha > 0:
            loss = (1 - config.alpha) * loss + config.alpha * soft_loss(
                logits.float(), teacher_logits.float(), config.temperature)
        for student_point, teacher_point in hints:
            mapped = adapters[_key(student_point, teacher_point)](feats[student_point])
            loss = loss + config.beta * F.mse_loss(mapped.float(),
                                                   teacher_feats[teacher_point].float())
        return logits, loss

    try:
        result = train(student, dataset, recipe, progress=progress, objective=objective,
                       extra=adapters)
        gaps_after = _hint_gaps(student_net, teacher_net, adapters, hints, dataset, device)
        teacher_accuracy = evaluate(teacher, dataset, device=device)["accuracy"]
    finally:
        teacher.train(was_training)  # (last: in train mode it would update its BN statistics)
    return Distilled(student.eval(), config, result, teacher_accuracy,
                     {k: (gaps_before[k], gaps_after[k]) for k in gaps_before})


def _key(student_point: str, teacher_point: str) -> str:
    return f"{student_point}->{teacher_point}".replace(".", "_")  # (a ModuleDict key)


def _hinted(student: nn.Module, teacher: nn.Module, config: DistillConfig
            ) -> tuple[nn.Module, nn.Module, nn.ModuleDict]:
    """Both networks returning (logits, {point: activation}) from one forward pass, and one
    adapter per hint from the student's point to the teacher's shape."""
    s_graph, t_graph = cut_graph(student), cut_graph(teacher)
    adapters = nn.ModuleDict()
    for student_point, teacher_point in config.features:
        try:
            s_point, t_point = s_graph.point(student_point), t_graph.point(teacher_point)
            adapters[_key(student_point, teacher_point)] = Stitch(
                config.adapter, s_point.shape, t_point.shape, in_tokens=s_point.tokens,
                out_tokens=t_point.tokens)
        except PlatoError as e:
            raise SettingError("features", f"distill hint [{student_point}, {teacher_point}]: "
                               f"{e}") from None
    student_points = [s for s, _ in config.features]
    teacher_points = [t for _, t in config.features]
    return s_graph.tapped(student_points), t_graph.tapped(teacher_points), adapters


@torch.no_grad()
def _hint_gaps(student_net: nn.Module, teacher_net: nn.Module, adapters: nn.ModuleDict,
               hints: tuple[tuple[str, str], ...], dataset: Dataset, device: torch.device,
               examples: int = 512) -> dict[str, float]:
    """Each hint's mean squared gap on the first `examples` test images (eval mode)."""
    if not hints:
        return {}
    modes = [(m, m.training) for m in (student_net, adapters)]
    for m, _ in modes:
        m.eval()
    loader = DeviceLoader(dataset.test, 256, mean=dataset.mean, std=dataset.std, device=device,
                          augment=Augment())
    sums, seen = {}, 0
    for x, _ in loader:
        (_, feats), (_, taught) = student_net(x), teacher_net(x)
        for s, t in hints:
            gap = F.mse_loss(adapters[_key(s, t)](feats[s]), taught[t], reduction="sum")
            sums[f"{s}->{t}"] = sums.get(f"{s}->{t}", 0.0) + float(gap) / taught[t][0].numel()
        seen += len(x)
        if seen >= examples:
            break
    for m, mode in modes:
        m.train(mode)
    return {k: v / seen for k, v in sums.items()}
