#!/bin/sh
# Installs Graphviz (Debian package `graphviz`), whose `dot` program draws the pictures of
# `engine graph`, unless `dot` is already there. Works as root or through sudo; anywhere else
# it says what to install instead of failing with a shell error.
set -e
command -v dot >/dev/null 2>&1 && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-graphviz.sh: no apt-get here; install Graphviz's dot with your package" \
         "manager (brew install graphviz, dnf install graphviz, ...) and run again" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    run=""
elif command -v sudo >/dev/null 2>&1; then
    run="sudo"
else
    echo "install-graphviz.sh: installing the Debian package graphviz needs root or sudo;" \
         "ask for it to be installed (apt-get install graphviz) and run again" >&2
    exit 1
fi
$run apt-get update -qq
$run apt-get install -y -qq graphviz
