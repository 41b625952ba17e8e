//! Synth speed: build the metrics stack and serialize it as YAML and JSON.

use criterion::{criterion_group, criterion_main, Criterion};

fn synth(c: &mut Criterion) {
    c.bench_function("synth metrics stack (build + YAML + JSON)", |b| {
        b.iter(|| {
            let stack =
                metrics_stack::metrics_stack(&metrics_stack::MetricsStackProps::default()).expect("valid stack");
            cfn::synth::artifacts(std::slice::from_ref(stack.stack())).expect("renders")
        })
    });
}

criterion_group!(benches, synth);
criterion_main!(benches);
