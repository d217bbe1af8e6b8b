# npm's js-tiktoken, the independent tokenizer the data tests compare with, pinned:
#   js_tiktoken_install DIR     installs it into DIR once (npm's registry or its cache) and copies
#                               tests/core/data/tiktoken_reference.mjs beside it
#   tiktoken_reference ARGS...  runs that script (see its head)
JS_TIKTOKEN_PACKAGE=js-tiktoken@1.0.21

js_tiktoken_install() {
    JS_TIKTOKEN_DIR=$1
    command -v node >/dev/null && command -v npm >/dev/null ||
        { echo "error: the tokenizer tests need node and npm (Debian: apt-get install nodejs npm)"; exit 1; }
    mkdir -p "$JS_TIKTOKEN_DIR"
    if [[ ! -d $JS_TIKTOKEN_DIR/node_modules/js-tiktoken ]]; then
        flock "$JS_TIKTOKEN_DIR" npm install --prefix "$JS_TIKTOKEN_DIR" --silent --no-audit --no-fund --prefer-offline \
            "$JS_TIKTOKEN_PACKAGE" >/dev/null || { echo "error: npm install $JS_TIKTOKEN_PACKAGE failed"; exit 1; }
    fi
    cp "$(dirname "${BASH_SOURCE[0]}")/../core/data/tiktoken_reference.mjs" "$JS_TIKTOKEN_DIR/"
}

tiktoken_reference() { node "$JS_TIKTOKEN_DIR/tiktoken_reference.mjs" "$@"; }
