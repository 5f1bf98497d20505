#!/usr/bin/env bash
# The oldest versions setup.py declares, on a fast subset, in a fresh virtual
# environment (.venv-oldest): Keras 3.10 with TensorFlow 2.16, JAX 0.4.34 and
# PyTorch 2.13 on the layers, the ops and surgery under each backend; then the
# oldest keras-hub that stochastic_depth_tf.hub supports, with the Keras it
# needs (3.15), on a KerasHub smoke test. `.ci/run` runs it after the full
# suite; docs/development.md ("Versions") says how the floors were found.
#
#     bash tests/oldest_versions.sh             # install, then test
#     bash tests/oldest_versions.sh --install   # only make .venv-oldest
#     bash tests/oldest_versions.sh --test      # only test, in the .venv-oldest made before
#
# `.ci/run` makes the environment in the background while the newest versions'
# suite runs (pip mostly waits on the disk), then tests here.
set -euo pipefail
cd "$(dirname "$0")/.."
phase="${1:-all}"
case "$phase" in
    all | --install | --test) ;;
    *)
        echo "tests/oldest_versions.sh: expected no argument, --install or --test; received '$phase'" >&2
        exit 2
        ;;
esac
export TF_CPP_MIN_LOG_LEVEL=2
start=$SECONDS
if [ "$phase" != --test ]; then
    rm -rf .venv-oldest
    python3 -m venv .venv-oldest
    # shellcheck disable=SC1091
    source .venv-oldest/bin/activate
    pip install --quiet -e ".[cpu,test,jax,hub]" "keras==3.10.0" "tensorflow-cpu==2.16.2" "jax[cpu]==0.4.34" "torch==2.13.0+cpu"
    pip list --format=freeze | grep -iE '^(tensorflow-cpu|keras|jax|jaxlib|torch|numpy)==' | tr '\n' ' '
    echo "(installed in $((SECONDS - start)) s)"
    deactivate
    [ "$phase" = --install ] && exit 0
fi
# shellcheck disable=SC1091
source .venv-oldest/bin/activate
subset=(tests/layers tests/test_ops.py tests/test_surgery.py tests/test_surgery_residuals.py)
neutral="not tensorflow_only and not slow and not one_backend"
status=0
KERAS_BACKEND=tensorflow python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile -m "not slow" "${subset[@]}" || status=1
KERAS_BACKEND=jax python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile -m "$neutral" tests/layers tests/test_ops.py || status=1
KERAS_BACKEND=torch python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile -m "$neutral" tests/layers tests/test_ops.py || status=1
# keras-hub without its dependencies (its tensorflow-text pulls the full
# TensorFlow); keras-hub 0.30 declares Keras 3.15 or newer.
pip install --quiet --no-deps "keras==3.15.1" "keras-hub==0.30.0"
KERAS_BACKEND=tensorflow python -m pytest -q -p no:cacheprovider -m "not slow" tests/test_hub.py \
    -k "test_class_is_kept_and_weights_copied or test_inverted_inference_is_the_original" || status=1
echo "oldest versions: $((SECONDS - start)) s, $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
