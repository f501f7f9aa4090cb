# jitgate's image: built from source, run from a minimal base with no shell, as non-root.
#   docker build -t jitgate/jitgate:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml names the benchmark target; it must exist for the manifest to load.
COPY benches ./benches
RUN cargo build --release --locked --bin jitgate

# glibc and libgcc only: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/jitgate /jitgate
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/jitgate"]
CMD ["serve", "--listen=0.0.0.0:8443"]
