"""One forward pass per batch, and from it every gradient the methods ask for, for all k classes.

What a pass computes is set by ``Needs``:
- target-layer activations, always;
- per-class gradients at the target layers (Grad-CAM and its family). Without any input-space need,
  the forward below the earliest target layer runs under ``no_grad`` (no graph, no saved
  activations): that layer's output is detached and re-enters the network as a leaf, and
  ``torch.autograd.grad`` takes the gradients of the k selected class scores with respect to the
  target layers only: k backward passes through the head, none into the backbone or the parameters;
- input gradients under backward rules (``plain``, ``guided``, ``deconv``): the input requires grad
  and the whole graph is kept; the same forward serves the layer gradients and then one backward
  per class and rule;
- taps: tensors a method captures during the forward (FullGrad's bias layers), whose per-class
  gradients it reduces as they come;
- Hessian-vector products H·A at the target layers (ShapleyCAM), H the Hessian of a class score with
  respect to the layer's output A: each class's layer gradients are taken with ``create_graph`` and
  differentiated once more, along A, one layer at a time (pytorch-grad-cam's
  ``autograd.grad(grads, activations, grad_outputs=activations)``: no cross-layer terms). The forward
  then runs with attention computed explicitly (``engine.attention``): fused attention kernels cannot
  be differentiated twice.
Parameters' ``.grad`` are never touched. Hooks live in a ``with`` block and are removed in
``finally``; modes and (with ``channels_last``) the parameters' memory layout are put back.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol
from weakref import WeakKeyDictionary

import torch
from torch import nn

from ..errors import LayerError
from ..heads import logits_of
from ..layout import Layout
from .attention import ExplicitAttention
from .needs import NOTHING, Needs
from .rules import Rules

ClassChooser = Callable[[torch.Tensor], torch.Tensor]  # ranking B×C (see heads.Head.ranking) → class indices B×K
Scores = Callable[[torch.Tensor], torch.Tensor]  # model output B×N → class scores B×C (see heads)


class Tap(Protocol):
    """A method's own capture: tensors recorded during the forward, their gradients reduced per class."""

    def attach(self, model: nn.Module, armed: Callable[[], bool]) -> list[torch.utils.hooks.RemovableHandle]:
        """Register forward hooks that record tensors while ``armed()``; return the handles."""
        ...

    def tensors(self) -> list[torch.Tensor]:
        """What was recorded during the last forward."""
        ...

    def reduce(self, gradients: Sequence[torch.Tensor | None], x: torch.Tensor) -> torch.Tensor:
        """One class's gradients of ``tensors()`` → that class's B×… result."""
        ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class LayerCapture:
    """One target layer's output as maps, and the gradient of every selected class score there."""

    name: str
    layout: Layout
    output: torch.Tensor  # the layer's output in its own layout, detached (for feeding back)
    activations: torch.Tensor  # B×C×h×w, float32
    gradients: torch.Tensor | None  # B×K×C×h×w, float32
    hessian: torch.Tensor | None = None  # B×K×C×h×w, H·A for each class (``Needs.hessian``), float32


@dataclass(frozen=True)
class Pass:
    """Everything one forward (and its backward passes) gave, on the model's device."""

    x: torch.Tensor  # B×3×H×W, the input as fed
    scores: torch.Tensor  # B×C class scores, float32 (logits for a softmax head)
    values: torch.Tensor  # B×C values explained (``heads.explained_scores`` of the scores), float32
    ranking: torch.Tensor  # B×C what the classes were chosen by (``heads.Head.ranking``), float32
    classes: torch.Tensor  # B×K class indices
    layers: tuple[LayerCapture, ...]
    input_gradients: Mapping[str, torch.Tensor] = field(default_factory=dict)  # rule → B×K×3×H×W
    taps: Mapping[str, torch.Tensor] = field(default_factory=dict)  # tap name → B×K×…
    prediction: torch.Tensor | None = None  # segmentation: B×H×W each pixel's predicted class (int64)

    @property
    def selected(self) -> torch.Tensor:
        """B×K explained values of the selected classes."""
        return self.values.gather(1, self.classes)


_LOCKS: WeakKeyDictionary[nn.Module, threading.RLock] = WeakKeyDictionary()
_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """One lock per model: camcli's hooks, modes and memory layout on a model are one caller's at a time,
    so threads explaining the same model take turns instead of seeing each other's hooks."""
    with _GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


class Capture:
    """``with Capture(model, layers, ...) as capture:`` hooks the target layers (and what ``needs``
    asks for) until the block ends; ``capture(x, choose)`` runs one pass.

    On exit the hooks are removed and every module's train/eval mode restored, also after an
    exception, so the caller's model is left as it was.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[tuple[str, Layout]],
        needs: Needs = NOTHING,
        scores: Scores = lambda out: out,
        explain: Scores = lambda scores: scores,
        ranking: Scores | None = None,
        taps: Mapping[str, Tap] | None = None,
        channels_last: bool = False,
        autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        modules = dict(model.named_modules())
        for name, _ in layers:
            if name not in modules:
                raise LayerError(f"No layer named '{name}'. See 'camcli layers MODEL'.")
        self.model = model
        self.layers = tuple(layers)
        self.needs = dataclasses.replace(needs, layer_gradients=True) if needs.hessian else needs
        self.scores = scores
        self.explain = explain
        self.ranking = ranking
        self.taps = {name: (taps or {})[name] for name in needs.taps}
        self.channels_last = channels_last
        self.autocast = autocast
        self._modules = [modules[name] for name, _ in layers]
        self._stack: ExitStack | None = None
        self._modes: dict[nn.Module, bool] = {}
        self._original_data: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._outputs: dict[int, torch.Tensor] = {}
        self._armed = False
        self._lock: threading.RLock | None = None
        self.rules: Rules | None = None

    @property
    def full_graph(self) -> bool:
        """Input gradients or taps need the graph from the input up."""
        return bool(self.needs.rules or self.needs.taps)

    def __enter__(self) -> Capture:
        self._lock = model_lock(self.model)
        self._lock.acquire()
        self._modes = {m: m.training for m in self.model.modules()}
        self.model.eval()
        stack = ExitStack()
        self._stack = stack
        try:
            if self.channels_last:
                # Conv kernels run faster in NHWC; the caller's own tensors are put back on exit.
                for tensor in [*self.model.parameters(), *self.model.buffers()]:
                    if tensor.dim() == 4 and id(tensor) not in self._original_data:
                        self._original_data[id(tensor)] = (tensor, tensor.data)
                        tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
            for i, module in enumerate(self._modules):
                stack.callback(module.register_forward_hook(self._hook(i)).remove)
            for tap in self.taps.values():
                for handle in tap.attach(self.model, lambda: self._armed):
                    stack.callback(handle.remove)
            if self.needs.rules - {"plain"}:
                self.rules = stack.enter_context(Rules(self.model, deconv="deconv" in self.needs.rules))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._stack is not None:
                self._stack.close()
        finally:
            self._stack = None
            self.rules = None
            self._outputs.clear()
            for tap in self.taps.values():
                tap.reset()
            for module, mode in self._modes.items():
                module.training = mode
            for tensor, data in self._original_data.values():
                tensor.data = data
            self._original_data.clear()
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _hook(self, index: int) -> Callable[[nn.Module, object, Any], Any]:
        name = self.layers[index][0]

        def capture(module: nn.Module, args: object, output: Any) -> Any:
            if not self._armed:
                return None
            if index in self._outputs:
                raise LayerError(f"Layer '{name}' runs more than once per forward pass; pick a layer that runs once.")
            if not isinstance(output, torch.Tensor):
                raise LayerError(f"Layer '{name}' does not output a single tensor. Pick another with 'camcli layers'.")
            if not output.requires_grad and self.needs.layer_gradients and not self.full_graph:
                # The graph starts here, at a float32 leaf; the forward call's no_grad block restores the mode.
                torch.set_grad_enabled(True)
                leaf = output.detach().float().requires_grad_(True)
                self._outputs[index] = leaf
                return leaf.to(output.dtype).clone()
            self._outputs[index] = output
            # A copy goes on, so in-place ops downstream (e.g. F.relu(..., inplace=True)) leave it intact.
            return output.clone()

        return capture

    def __call__(self, x: torch.Tensor, choose: ClassChooser) -> Pass:
        """Forward ``x`` once; gradients for the classes ``choose`` picks from the class scores."""
        if self._stack is None:
            raise RuntimeError("Capture must be used inside a 'with' block")
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        self._outputs.clear()
        for tap in self.taps.values():
            tap.reset()
        if self.full_graph:
            x = x.detach().requires_grad_(True)
        grad_mode = torch.enable_grad() if self.full_graph else torch.no_grad()
        functional = self.rules.functional() if self.rules is not None else nullcontext()
        attention = ExplicitAttention() if self.needs.hessian else nullcontext()
        self._armed = True
        try:
            with grad_mode, functional, attention, self.autocast():
                out = logits_of(self.model(x))
        finally:
            self._armed = False
        try:
            outputs = []
            for i, (name, _) in enumerate(self.layers):
                if i not in self._outputs:
                    raise LayerError(f"Layer '{name}' was not run by the model's forward pass.")
                outputs.append(self._outputs[i])
            scores = self.scores(out.float())
            values = self.explain(scores)
            ranking = scores.detach() if self.ranking is None else self.ranking(out.detach().float())
            classes = choose(ranking)
            selected = values.gather(1, classes)
            grads, hessians, inputs, taps = self._backward(selected, x, outputs)
        finally:
            self._outputs.clear()
        layers = tuple(
            LayerCapture(
                name,
                layout,
                output.detach(),
                layout.to_map(output.detach()).float(),
                None if grads is None else torch.stack([layout.to_map(g[i]) for g in grads], dim=1).float(),
                None if hessians is None else torch.stack([layout.to_map(h[i]) for h in hessians], dim=1).float(),
            )
            for i, ((name, layout), output) in enumerate(zip(self.layers, outputs, strict=True))
        )
        prediction = out.detach().argmax(dim=1) if out.dim() == 4 else None
        return Pass(x.detach(), scores.detach(), values.detach(), ranking, classes, layers, inputs, taps, prediction)

    def _backward(
        self, selected: torch.Tensor, x: torch.Tensor, outputs: list[torch.Tensor]
    ) -> tuple[
        list[list[torch.Tensor]] | None,
        list[list[torch.Tensor]] | None,
        dict[str, torch.Tensor],
        dict[str, torch.Tensor],
    ]:
        """Per class: one plain backward for the layer gradients, plain input gradient and taps (keeping
        its own graph when Hessian-vector products are asked for, then one more backward per layer for
        them), then one per other rule. The graph is freed by the last one."""
        needs = self.needs
        k = selected.shape[1]
        tap_tensors = {name: tap.tensors() for name, tap in self.taps.items()}
        plain_targets: list[torch.Tensor] = []
        if needs.layer_gradients:
            plain_targets += outputs
        if "plain" in needs.rules:
            plain_targets.append(x)
        for tensors in tap_tensors.values():
            plain_targets += tensors
        other_rules = [rule for rule in ("guided", "deconv") if rule in needs.rules]
        calls = (1 if plain_targets else 0) + (len(outputs) if needs.hessian else 0) + len(other_rules)
        layer_grads: list[list[torch.Tensor]] = []
        hessians: list[list[torch.Tensor]] = []
        inputs: dict[str, list[torch.Tensor]] = {rule: [] for rule in needs.rules}
        taps: dict[str, list[torch.Tensor]] = {name: [] for name in self.taps}
        done = 0
        for j in range(k):
            score = selected[:, j].sum()
            if plain_targets:
                done += 1
                found = torch.autograd.grad(
                    score,
                    plain_targets,
                    retain_graph=needs.hessian or done < calls * k,
                    create_graph=needs.hessian,
                    allow_unused=True,
                )
                graphed = [torch.zeros_like(t) if g is None else g for t, g in zip(plain_targets, found, strict=True)]
                grads = [g.detach() for g in graphed]
                at = 0
                if needs.layer_gradients:
                    layer_grads.append(grads[: len(outputs)])
                    at = len(outputs)
                if "plain" in needs.rules:
                    inputs["plain"].append(grads[at])
                    at += 1
                for name, tensors in tap_tensors.items():
                    taps[name].append(self.taps[name].reduce(grads[at : at + len(tensors)], x.detach()))
                    at += len(tensors)
                if needs.hessian:
                    hessians.append([])
                    for output, grad in zip(outputs, graphed[: len(outputs)], strict=True):
                        done += 1
                        hessians[-1].append(self._along(grad, output, retain=done < calls * k))
            for rule in other_rules:
                done += 1
                assert self.rules is not None
                with self.rules.mode(rule):
                    (found_x,) = torch.autograd.grad(score, x, retain_graph=done < calls * k, allow_unused=True)
                inputs[rule].append(torch.zeros_like(x) if found_x is None else found_x)
        return (
            layer_grads if needs.layer_gradients else None,
            hessians if needs.hessian else None,
            {rule: torch.stack(g, dim=1).float() for rule, g in inputs.items()},
            {name: torch.stack(t, dim=1) for name, t in taps.items()},
        )

    @staticmethod
    def _along(grad: torch.Tensor, output: torch.Tensor, retain: bool) -> torch.Tensor:
        """H·A: the derivative of the layer gradient ``grad`` (taken with its graph) along the layer's own
        output A. Zero where the gradient does not depend on A (a layer followed only by linear maps)."""
        if not grad.requires_grad:
            return torch.zeros_like(output)
        (found,) = torch.autograd.grad(
            grad, output, grad_outputs=output.detach(), retain_graph=retain, allow_unused=True
        )
        return torch.zeros_like(output) if found is None else found
