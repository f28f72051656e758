# Shared by the scripts in this folder; sourced, not run.
#
# sb_setup installs what building and testing Switchboard needs on a Debian 12 machine and is
# cheap when everything is there already: it looks before it installs.

sb_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

sb_log() {
    echo "==> $*" >&2
}

sb_as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

# Installs the packages listed in scripts/apt-packages that are not installed yet.
sb_apt_packages() {
    local wanted=() missing=() package
    mapfile -t wanted < <(sed -e 's/#.*//' "$sb_root/scripts/apt-packages" | tr -s '[:space:]' '\n' | sed '/^$/d')
    for package in "${wanted[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$package")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    sb_log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    sb_as_root apt-get update -q
    # The machines' image deletes downloaded .deb files between dpkg runs, which breaks large
    # installs; an archive directory of our own is left alone.
    sb_as_root mkdir -p /var/cache/switchboard-apt/partial
    sb_as_root apt-get -q -o Dir::Cache::Archives=/var/cache/switchboard-apt \
        install -y --no-install-recommends "${missing[@]}"
}

# Makes cargo reachable and the components the checks use present. The toolchain itself comes
# from rustup, which the machines have.
sb_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install a Rust toolchain with rustup, then run this again" >&2
        return 1
    fi
    if command -v rustup >/dev/null 2>&1; then
        local installed component
        installed="$(rustup component list --installed 2>/dev/null || true)"
        for component in rustfmt clippy; do
            if ! grep -q "^$component" <<<"$installed"; then
                sb_log "adding Rust component $component"
                rustup component add "$component"
            fi
        done
    fi
}

sb_setup() {
    sb_apt_packages
    sb_rust
}

# Installs the npm packages of tests/browser (playwright-core, which drives Chromium in the
# browser end-to-end test) when node_modules is missing or package-lock.json changed since
# the last install. npm ci empties node_modules first, so the copy of the lockfile kept there
# disappears with a half-finished install too.
sb_browser_packages() {
    local dir="$sb_root/tests/browser"
    local stamp="$dir/node_modules/.installed-package-lock.json"
    if cmp -s "$dir/package-lock.json" "$stamp"; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm not found: install Node.js 20 or later with npm, then run this again" >&2
        return 1
    fi
    sb_log "installing the browser test's npm packages (tests/browser)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$dir/package-lock.json" "$stamp"
}

# Creates tests/interop/.venv with the interop test's Python packages (aiortc) when it is
# missing or tests/interop/requirements.txt changed since the last install.
sb_interop_packages() {
    local dir="$sb_root/tests/interop"
    local venv="$dir/.venv"
    local stamp="$venv/.installed-requirements.txt"
    if cmp -s "$dir/requirements.txt" "$stamp"; then
        return 0
    fi
    sb_log "installing the interop test's Python packages (tests/interop: aiortc)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
    cp "$dir/requirements.txt" "$stamp"
}
