# Short names for what `cargo run` and `cargo xtask` already do.

# Start franz with the embedded broker.
up:
    cargo run --release -- up

# Everything CI runs.
ci:
    cargo xtask ci

test:
    cargo test

e2e:
    cargo xtask e2e

props:
    cargo xtask props

bench:
    cargo xtask bench pipeline
