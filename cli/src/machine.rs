//! One line naming the machine a table was measured on, printed beside the
//! main job's table, `bench`'s table and `info`: absolute rates mean
//! nothing without it (the same kernel runs 2× apart on two AMD EPYC VMs),
//! and BENCHMARKS.md writes it beside every number.

/// `machine: <CPU model> (<arch>, family F model M), N CPUs, D cache
/// domain(s), LLC X KiB`, from `/proc/cpuinfo` and the library's
/// [`Topology`](initret::Topology); parts that cannot be read are left out.
///
/// ```
/// let line = initret_cli::machine::summary();
/// assert!(line.starts_with("machine: ") && line.contains("CPUs"));
/// ```
pub fn summary() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let topology = initret::Topology::detect();
    let domains = topology.domains();
    let llc = domains
        .first()
        .and_then(|d| d.llc_bytes)
        .map(|bytes| format!(", LLC {} KiB", bytes / 1024))
        .unwrap_or_default();
    format!(
        "machine: {}, {cpus} CPUs, {} cache domain{}{llc}",
        cpu_model(&cpuinfo),
        domains.len(),
        if domains.len() == 1 { "" } else { "s" }
    )
}

/// The CPU's model name, architecture and (on x86) family and model
/// numbers, as `/proc/cpuinfo` text `cpuinfo` gives them; the architecture
/// alone when it names no model.
pub fn cpu_model(cpuinfo: &str) -> String {
    let field = |key: &str| {
        cpuinfo.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == key).then(|| value.trim().to_string())
        })
    };
    let arch = std::env::consts::ARCH;
    match (field("model name"), field("cpu family"), field("model")) {
        (Some(name), Some(family), Some(model)) => {
            format!("{name} ({arch}, family {family} model {model})")
        }
        (Some(name), _, _) => format!("{name} ({arch})"),
        _ => arch.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_name_and_numbers_come_from_the_first_processor() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(
            cpu_model(cpuinfo),
            format!("AMD EPYC ({}, family 25 model 17)", std::env::consts::ARCH)
        );
    }

    #[test]
    fn without_a_model_name_the_architecture_is_named() {
        // aarch64's /proc/cpuinfo has implementer and part numbers instead.
        let cpuinfo = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n";
        assert_eq!(cpu_model(cpuinfo), std::env::consts::ARCH);
        assert_eq!(cpu_model(""), std::env::consts::ARCH);
        let named = "model name\t: Neoverse\n";
        assert_eq!(
            cpu_model(named),
            format!("Neoverse ({})", std::env::consts::ARCH)
        );
    }

    #[test]
    fn the_summary_names_cpus_and_domains() {
        let line = summary();
        assert!(line.starts_with("machine: "), "{line}");
        assert!(
            line.contains(" CPUs, ") && line.contains("cache domain"),
            "{line}"
        );
    }
}
