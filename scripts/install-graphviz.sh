#!/bin/sh
# Installs Graphviz (Debian package `graphviz`), whose `dot` program draws the pictures of
# `engine graph`, unless `dot` is already there. Works as root or through sudo.
set -e
command -v dot >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -eq 0 ]; then run=""; else run="sudo"; fi
$run apt-get update -qq
$run apt-get install -y -qq graphviz
