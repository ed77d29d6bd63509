"""What methods need from the model, as context managers that leave it untouched: ``capture.Capture``
(one forward per batch, layer and input gradients for all k classes), ``rules.Rules`` (backward rules at
every activation) and ``probe.Probe`` (batched perturbed forwards, from the input or from the target
layer up). ``needs.Needs`` (what a method asks of a pass) is light; the rest imports torch."""
