"""JAX: a skipped branch inside `lax.cond`, with its state updates carried out as values.

Keras trains JAX models statelessly: inside the jitted step every variable
read and every assignment goes through a `keras.StatelessScope`, and the new
values of the non-trainable variables (BatchNormalization's moving
statistics, seed generator states) are returned by the step. An assignment
made inside one arm of `lax.cond` would leave a tracer of that arm in the
scope, which JAX refuses ("leaked tracer"). So `conditional` runs the kept
arm in a scope of its own, returns the branch's new non-trainable values
from the arm beside its output (the skipped arm returns the current ones),
and assigns them after the conditional: a dropped branch leaves its moving
statistics untouched, as on TensorFlow.

JAX traces every step, jitted or not, so shapes are always static: a
per-example kept count must be known when tracing (`mode="subset"`), and a
Bernoulli count (`mode="sample"`) is computed and multiplied.

On the CPU XLA compiles the gradient convolutions JAX derives inside a
conditional to slow loops, as under TensorFlow's XLA
(`backend/tensorflow_xla.py`): XLA's pass that puts a convolution in the
layout of its fast kernel (channels last, kernel `HWIO`) only visits the
entry computation, and JAX's transpose rules give the gradients other
dimension orders (one 3x3 convolution's gradient on 64x32x32x32 took
17 s inside `lax.cond` against 0.18 s outside, on a loaded machine). So on
the CPU `conditional` re-evaluates the kept arm's jaxpr with each
channels-last convolution replaced by `convolution_with_forward_gradients`,
whose gradients are forward convolutions in that layout only (0.20 s in the
same measurement; strides, kernel dilation and feature groups, depthwise
included, are covered). A branch with a convolution the rewrite does not
cover (a transposed convolution, `channels_first`) is not put in
`lax.cond` on the CPU (`branch_gradient_scope` returns None, and the block
multiplies). GPUs and TPUs keep JAX's own gradients (not measured there).
