# CNNGen: JupyterLab and the `cnngen` command line, with TensorFlow on CUDA (VARIANT=cuda, the
# default) or on the CPU (VARIANT=cpu). Build and run commands are in docs/container.md.

# CUDA 12.8 runtime with cuDNN 9 on Ubuntu 24.04 (Python 3.12), run on GPUs through the NVIDIA
# container toolkit. TensorFlow's and PyTorch's wheels bring their own CUDA libraries, so the
# base mainly sets the minimum driver the toolkit checks: CUDA 12.8, the first with Blackwell.
# NOTE: the digest was taken from public Dockerfiles that pin this tag, not pulled here. Refresh it
# whenever the tag changes: docker buildx imagetools inspect nvidia/cuda:<tag>
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04@sha256:ac55d124da4882b497f732d8dfd9a702d5447a5f29d08d56da6f64f0a1eb34bc
FROM ${BASE_IMAGE}

# cuda installs tensorflow[and-cuda]. cpu installs tensorflow-cpu, a far smaller image for
# laptops and CI.
ARG VARIANT=cuda
# PyTorch for the image and graph predictors (the `torch` extra): "auto" installs it for cuda
# and skips it for cpu. A pyproject.toml without that extra builds too, with a note.
# NOTE: pip resolves torch 2.14.1 to CUDA 13 libraries (TensorFlow 2.21 to CUDA 12.9), so the
# PyTorch predictors need a host driver that supports CUDA 13.
ARG INSTALL_TORCH=auto
# 1000 is the first user on most Linux hosts, so files written to bind mounts stay theirs.
ARG CNNGEN_UID=1000

# pipefail, so that a failing command on the left of a pipe fails the build.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH}

# System packages in one layer. graphviz: pydot draws architectures with `dot`. tini: reaps
# the kernels and processes JupyterLab starts and forwards signals. ca-certificates: pip over
# HTTPS. dataset-fashion-mnist: Fashion-MNIST offline, from Debian or Ubuntu universe, where
# the distribution has it. No Java: the ANTLR parser is generated and committed.
RUN apt-get update \
 && optional_packages=() \
 && if apt-cache show dataset-fashion-mnist >/dev/null 2>&1; then \
        optional_packages+=(dataset-fashion-mnist); \
    fi \
 && apt-get install -y --no-install-recommends \
        ca-certificates \
        graphviz \
        python3 \
        python3-venv \
        tini \
        "${optional_packages[@]}" \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# The distribution's python3 (3.11 on Debian 12, 3.12 on Ubuntu 24.04), isolated in a venv
# because PEP 668 forbids pip installs into the system Python of both.
RUN python3 -m venv "${VIRTUAL_ENV}"

# Dependencies before the source, so that editing code reuses this layer. The requirement list
# is rendered from pyproject.toml, the single source of the pins. TensorFlow's C++ headers
# (290 MB in 2.21) only serve to compile custom ops, so they are removed.
WORKDIR /opt/cnngen
COPY pyproject.toml ./
COPY scripts/generate_environment.py scripts/
RUN case "${VARIANT}" in \
        cuda|cpu) ;; \
        *) echo "invalid VARIANT '${VARIANT}'; expected cuda or cpu" >&2; exit 1 ;; \
    esac \
 && case "${INSTALL_TORCH}" in \
        auto) install_torch=$([[ "${VARIANT}" == cuda ]] && echo yes || echo no) ;; \
        yes|no) install_torch="${INSTALL_TORCH}" ;; \
        *) echo "invalid INSTALL_TORCH '${INSTALL_TORCH}'; expected auto, yes or no" >&2; exit 1 ;; \
    esac \
 && optional_extras=$([[ "${install_torch}" == yes ]] && echo torch || echo "") \
 && python3 scripts/generate_environment.py --requirements \
        --extras "${VARIANT},lab" --optional-extras "${optional_extras}" > /tmp/requirements.txt \
 && cat /tmp/requirements.txt \
 && pip install --requirement /tmp/requirements.txt \
 && rm /tmp/requirements.txt \
 && rm -rf "${VIRTUAL_ENV}"/lib/python3*/site-packages/tensorflow/include

# The package itself. Its dependencies are installed above, so nothing more is resolved here.
# pip only fetches the build backend (setuptools) into an isolated build environment. The install
# is editable because `cnngen run` executes the notebooks next to the package, in
# /opt/cnngen/notebooks. compileall writes the bytecode that user cnngen could not write later.
COPY . /opt/cnngen
RUN pip install --no-deps --editable /opt/cnngen \
 && python -m compileall -q /opt/cnngen/cnngen

# Ubuntu images ship a user `ubuntu` with UID 1000, so whoever holds CNNGEN_UID is removed
# before `cnngen` takes it. getent exits 2 when nobody holds it. The work directory gets the
# notebooks and parameter files, writable so that JupyterLab can save them. Keras looks for
# Fashion-MNIST under ~/.keras/datasets.
RUN holder=$(getent passwd "${CNNGEN_UID}" | cut -d: -f1 || true) \
 && if [[ -n "${holder}" ]]; then userdel --remove "${holder}"; fi \
 && useradd --create-home --uid "${CNNGEN_UID}" --shell /bin/bash cnngen \
 && mkdir -p /home/cnngen/work /home/cnngen/.keras/datasets /runs \
 && for folder in notebooks parameters; do \
        if [[ -d "/opt/cnngen/${folder}" ]]; then cp -r "/opt/cnngen/${folder}" /home/cnngen/work/; fi; \
    done \
 && if [[ -d /usr/share/datasets/fashion-mnist ]]; then \
        ln -s /usr/share/datasets/fashion-mnist /home/cnngen/.keras/datasets/fashion-mnist; \
    fi \
 && chown -R cnngen:cnngen /home/cnngen /runs

USER cnngen
WORKDIR /home/cnngen/work
EXPOSE 8888

# No HEALTHCHECK: the same image runs batch jobs (`cnngen run ...`) where no server listens.
ENTRYPOINT ["/usr/bin/tini", "--"]
# JupyterLab prints a login URL with a random token unless JUPYTER_TOKEN is set.
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", \
     "--ServerApp.root_dir=/home/cnngen/work"]
