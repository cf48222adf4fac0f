#!/bin/bash -eu
# Builds the three fuzz targets with the sanitizer ClusterFuzzLite asks for
# (cargo fuzz reads $SANITIZER through the base image's wrapper) and ships each
# with its checked-in seed corpus.
cd "$SRC/gupcheck"
cargo fuzz build -O
release=fuzz/target/x86_64-unknown-linux-gnu/release
for target in ops interleave presets; do
  cp "$release/$target" "$OUT/"
  if [ -d "corpus/$target" ]; then
    zip -jq "$OUT/${target}_seed_corpus.zip" corpus/"$target"/*
  fi
done
