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

# Only the embedded broker, for other Kafka clients.
broker:
    cargo run --release -- broker

crash:
    cargo xtask crash

interop:
    cargo xtask interop

# The container brokers against a real Docker engine with stand-in images.
containers:
    cargo xtask containers

bench-broker:
    cargo xtask bench broker
