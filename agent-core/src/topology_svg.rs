//! A picture of a [`Topology`] for the HTML report: one box per NUMA node with its CPUs as small
//! cells and its PCI devices (NICs, storage) below them, and [`Mark`]s showing where the
//! reactors, the target's memory and the devices in use sit, and what a finding points at.
//!
//! The output is one self-contained inline `<svg>` element: no stylesheet, script, font or link
//! (only presentation attributes), every text escaped, integer coordinates, and a layout that
//! depends only on the inputs (nodes, CPUs and devices in ascending order, marks in the order
//! given), so the same topology and marks always give the same bytes and a report can be
//! diffed. Marks naming something the topology does not have are listed under the picture
//! rather than dropped.
//!
//! Pure: no I/O.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::finding::{Finding, Subject};
use crate::sample::{MemorySample, TargetInfo};
use crate::topology::{PciDevice, Topology};

/// Something to show on the picture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// A reactor pinned to a CPU (`label`: "reactor 0").
    Reactor {
        /// CPU OS index.
        cpu: u32,
        /// Text shown with it.
        label: String,
    },
    /// Memory on a node, e.g. the target's buffers from numa_maps ("buffers 2.0 GiB").
    Memory {
        /// NUMA node OS index.
        node: u32,
        /// Text shown with it.
        label: String,
    },
    /// A device in use, by bus id, netdev, block device or RDMA device name ("listener
    /// 10.0.0.1:4420", "ns 1 backend").
    Device {
        /// Any name [`Topology::find_pci`] knows.
        name: String,
        /// Text shown with it.
        label: String,
    },
    /// What a finding points at, drawn in the warning colour ("reactor 2 is remote from its
    /// NIC").
    Highlight {
        /// Where.
        place: Place,
        /// Text shown with it.
        label: String,
    },
}

/// A place on the picture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// A CPU (OS index).
    Cpu(u32),
    /// A NUMA node (OS index).
    Node(u32),
    /// A PCI device by any of its names.
    Device(String),
}

/// The marks a report draws for a target: its reactors on their CPUs, its buffer memory per
/// node (numa_maps), the listeners' NICs and the namespaces' drives, and what each finding is
/// about (reactor → its CPU, netdev or device → its PCI device).
pub fn marks_for(
    info: &TargetInfo,
    memory: Option<&MemorySample>,
    findings: &[Finding],
) -> Vec<Mark> {
    let mut marks = Vec::new();
    let mut reactors = info.reactors.clone();
    reactors.sort_by_key(|r| r.index);
    for r in &reactors {
        marks.push(Mark::Reactor {
            cpu: r.core,
            label: format!("reactor {}", r.index),
        });
    }
    if let Some(m) = memory {
        let (by_node, what) = if m.buffer_bytes_by_node.is_empty() {
            (&m.total_bytes_by_node, "target memory")
        } else {
            (&m.buffer_bytes_by_node, "target buffers")
        };
        let mut by_node = by_node.clone();
        by_node.sort_unstable();
        for (node, bytes) in by_node.into_iter().filter(|&(_, b)| b > 0) {
            marks.push(Mark::Memory {
                node,
                label: format!("{what} {}", human_bytes(bytes)),
            });
        }
    }
    for l in &info.listeners {
        if let Some(nd) = &l.netdev {
            marks.push(Mark::Device {
                name: nd.clone(),
                label: format!("listener {} {}", l.transport, l.address),
            });
        }
    }
    for ns in &info.namespaces {
        let Some(dev) = &ns.device else { continue };
        let dev = dev.strip_prefix("/dev/").unwrap_or(dev);
        // A backing file is not a device: nothing to place.
        if dev.contains('/') {
            continue;
        }
        marks.push(Mark::Device {
            name: dev.to_string(),
            label: format!("ns {} ({})", ns.nsid, ns.backend),
        });
    }
    let core_of = |index: u32| {
        info.reactors
            .iter()
            .find(|r| r.index == index)
            .map(|r| r.core)
    };
    for f in findings {
        let place = match &f.subject {
            Subject::Reactor { index } => core_of(*index).map(Place::Cpu),
            Subject::Qpair { reactor, .. } => core_of(*reactor).map(Place::Cpu),
            Subject::Netdev { name } | Subject::Device { name } => {
                Some(Place::Device(name.clone()))
            }
            Subject::RdmaPort { device, .. } => Some(Place::Device(device.clone())),
            Subject::Target => None,
        };
        if let Some(place) = place {
            marks.push(Mark::Highlight {
                place,
                label: shorten_back(&format!("{}: {}", f.kind.name(), f.summary), 90),
            });
        }
    }
    marks
}

// Geometry (px).
const MARGIN: i64 = 12;
const GAP: i64 = 16;
const PAD: i64 = 10;
const CELL_W: i64 = 30;
const CELL_H: i64 = 20;
const CELL_GAP: i64 = 3;
const MAX_CELLS_PER_ROW: i64 = 16;
const LINE: i64 = 16;
const DEV_H: i64 = 22;
const MIN_BOX_W: i64 = 320;
const BOX_COLUMNS: usize = 2;
const CHAR_W: i64 = 7;

// Colours.
const INK: &str = "#24292f";
const MUTED: &str = "#57606a";
const BOX_FILL: &str = "#f6f8fa";
const CELL_FILL: &str = "#ffffff";
const CELL_STROKE: &str = "#8c959f";
const REACTOR: &str = "#0969da";
const WARN: &str = "#cf222e";
const NIC_FILL: &str = "#dafbe1";
const NIC_STROKE: &str = "#1a7f37";
const DISK_FILL: &str = "#fff8c5";
const DISK_STROKE: &str = "#9a6700";
const OTHER_FILL: &str = "#eaeef2";

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0 at all.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// One node box's contents before layout.
struct NodeBox<'a> {
    /// "NUMA node 1 · 64 GiB · …", or the unknown-locality title.
    title: String,
    /// Node OS index (`None`: CPUs/devices whose node is unknown).
    node: Option<u32>,
    /// CPU OS indexes in drawing order (SMT siblings adjacent).
    cpus: Vec<u32>,
    devices: Vec<&'a PciDevice>,
    /// Text lines under the devices (memory marks, reactor list, node highlights).
    lines: Vec<(String, &'static str)>,
}

impl NodeBox<'_> {
    fn cols(&self) -> i64 {
        (self.cpus.len() as i64).clamp(1, MAX_CELLS_PER_ROW)
    }

    fn cpu_rows(&self) -> i64 {
        (self.cpus.len() as i64 + MAX_CELLS_PER_ROW - 1) / MAX_CELLS_PER_ROW
    }

    fn width(&self, dev_text: &dyn Fn(&PciDevice) -> String) -> i64 {
        let cells = PAD * 2 + self.cols() * (CELL_W + CELL_GAP) - CELL_GAP;
        let text = |s: &str| PAD * 2 + s.chars().count() as i64 * CHAR_W;
        let mut w = MIN_BOX_W.max(cells).max(text(&self.title));
        for d in &self.devices {
            w = w.max(text(&dev_text(d)) + PAD);
        }
        for (l, _) in &self.lines {
            w = w.max(text(l));
        }
        w
    }

    fn height(&self) -> i64 {
        let cpus = self.cpu_rows() * (CELL_H + CELL_GAP);
        let devs = self.devices.len() as i64 * (DEV_H + CELL_GAP);
        PAD + LINE + 4 + cpus + PAD / 2 + devs + self.lines.len() as i64 * LINE + PAD
    }
}

/// Renders `topo` with `marks` as a self-contained inline SVG element.
pub fn render_svg(topo: &Topology, marks: &[Mark]) -> String {
    let mut unplaced: Vec<String> = Vec::new();

    // What each CPU / device / node carries.
    let reactor_at = |cpu: u32| -> Vec<&str> {
        marks
            .iter()
            .filter_map(|m| match m {
                Mark::Reactor { cpu: c, label } if *c == cpu => Some(label.as_str()),
                _ => None,
            })
            .collect()
    };
    let highlight_at = |want: &dyn Fn(&Place) -> bool| -> Vec<&str> {
        marks
            .iter()
            .filter_map(|m| match m {
                Mark::Highlight { place, label } if want(place) => Some(label.as_str()),
                _ => None,
            })
            .collect()
    };
    let dev_matches =
        |name: &str, d: &PciDevice| topo.find_pci(name).is_some_and(|p| p.bdf == d.bdf);
    let device_marks = |d: &PciDevice| -> Vec<&str> {
        marks
            .iter()
            .filter_map(|m| match m {
                Mark::Device { name, label } if dev_matches(name, d) => Some(label.as_str()),
                _ => None,
            })
            .collect()
    };

    // Marks that name nothing in this topology.
    let has_cpu = |c: u32| topo.cpus.iter().any(|x| x.os_index == c);
    let has_node = |n: u32| topo.nodes.iter().any(|x| x.os_index == n);
    for m in marks {
        let missing = match m {
            Mark::Reactor { cpu, label } => {
                (!has_cpu(*cpu)).then(|| format!("{label} (cpu {cpu})"))
            }
            Mark::Memory { node, label } => {
                (!has_node(*node)).then(|| format!("{label} (node {node})"))
            }
            Mark::Device { name, label } => topo
                .find_pci(name)
                .is_none()
                .then(|| format!("{label} ({name})")),
            Mark::Highlight { place, label } => match place {
                Place::Cpu(c) => (!has_cpu(*c)).then(|| format!("{label} (cpu {c})")),
                Place::Node(n) => (!has_node(*n)).then(|| format!("{label} (node {n})")),
                Place::Device(d) => topo.find_pci(d).is_none().then(|| format!("{label} ({d})")),
            },
        };
        unplaced.extend(missing);
    }

    // Boxes: one per node, plus one for CPUs and devices of unknown locality.
    let mut node_ids: Vec<u32> = topo.nodes.iter().map(|n| n.os_index).collect();
    node_ids.sort_unstable();
    node_ids.dedup();
    let mut pci: Vec<&PciDevice> = topo.pci.iter().collect();
    pci.sort_by(|a, b| a.bdf.cmp(&b.bdf));
    let mut cpus = topo.cpus.clone();
    // SMT siblings side by side: by package, core, then OS index.
    cpus.sort_by_key(|c| (c.package, c.core, c.os_index));

    let mut boxes: Vec<NodeBox> = Vec::new();
    for &n in &node_ids {
        let info = topo.node(n);
        let node_cpus: Vec<u32> = cpus
            .iter()
            .filter(|c| c.node == Some(n))
            .map(|c| c.os_index)
            .collect();
        let mut title = format!("NUMA node {n}");
        if let Some(bytes) = info.and_then(|i| i.memory_bytes) {
            let _ = write!(title, " · {}", human_bytes(bytes));
        }
        let mut packages: Vec<u32> = cpus
            .iter()
            .filter(|c| c.node == Some(n))
            .map(|c| c.package)
            .collect();
        packages.sort_unstable();
        packages.dedup();
        match packages.as_slice() {
            [] => {}
            [p] => {
                let _ = write!(title, " · package {p}");
            }
            ps => {
                let list: Vec<String> = ps.iter().map(u32::to_string).collect();
                let _ = write!(title, " · packages {}", list.join(","));
            }
        }
        let mut lines = Vec::new();
        for m in marks {
            match m {
                Mark::Memory { node, label } if *node == n => {
                    lines.push((format!("memory: {label}"), REACTOR));
                }
                _ => {}
            }
        }
        for l in highlight_at(&|p| *p == Place::Node(n)) {
            lines.push((format!("! {l}"), WARN));
        }
        boxes.push(NodeBox {
            title,
            node: Some(n),
            cpus: node_cpus,
            devices: pci.iter().copied().filter(|d| d.node == Some(n)).collect(),
            lines,
        });
    }
    let orphan_cpus: Vec<u32> = cpus
        .iter()
        .filter(|c| c.node.is_none_or(|n| !node_ids.contains(&n)))
        .map(|c| c.os_index)
        .collect();
    let orphan_devs: Vec<&PciDevice> = pci
        .iter()
        .copied()
        .filter(|d| d.node.is_none_or(|n| !node_ids.contains(&n)))
        .collect();
    if !orphan_cpus.is_empty() || !orphan_devs.is_empty() {
        boxes.push(NodeBox {
            title: "NUMA node unknown".into(),
            node: None,
            cpus: orphan_cpus,
            devices: orphan_devs,
            lines: Vec::new(),
        });
    }
    // Reactor list under the CPUs of each box (the cell shows the CPU; the line says which).
    for b in &mut boxes {
        let mut reactor_lines = Vec::new();
        for &c in &b.cpus {
            for l in reactor_at(c) {
                reactor_lines.push((format!("cpu {c}: {l}"), REACTOR));
            }
            for l in highlight_at(&|p| *p == Place::Cpu(c)) {
                reactor_lines.push((format!("! cpu {c}: {l}"), WARN));
            }
        }
        reactor_lines.append(&mut b.lines);
        b.lines = reactor_lines;
    }

    let dev_text = |d: &PciDevice| -> String {
        let kind = if d.is_network() {
            "NIC"
        } else if d.is_storage() {
            "storage"
        } else {
            "PCI"
        };
        let mut s = format!("{kind} {}", d.bdf);
        let names = d.label();
        if names != d.bdf {
            let _ = write!(s, " {names}");
        }
        if let Some(mbps) = d.link_speed_mbps {
            let _ = write!(s, " · {}", human_speed(mbps));
        }
        for l in device_marks(d) {
            let _ = write!(s, " ← {l}");
        }
        for l in highlight_at(&|p| matches!(p, Place::Device(name) if dev_matches(name, d))) {
            let _ = write!(s, " ! {l}");
        }
        s
    };

    // Layout: boxes in rows of BOX_COLUMNS, each column as wide as its widest box.
    let ncols = BOX_COLUMNS.min(boxes.len()).max(1);
    let mut col_w = vec![0i64; ncols];
    for (i, b) in boxes.iter().enumerate() {
        col_w[i % ncols] = col_w[i % ncols].max(b.width(&dev_text));
    }
    let mut row_h = Vec::new();
    for row in boxes.chunks(ncols) {
        row_h.push(row.iter().map(NodeBox::height).max().unwrap_or(0));
    }

    // Header: the summary, then where the topology came from (long paths keep their end).
    let summary = topo.summary();
    let source = shorten_front(&topo.source, 110);
    let header_h = 2 * LINE + 6;
    let mut footer: Vec<(String, &str)> = Vec::new();
    if boxes.is_empty() {
        footer.push(("topology unknown: no CPUs or NUMA nodes".into(), MUTED));
    }
    let mut pairs = Vec::new();
    for (i, &a) in node_ids.iter().enumerate() {
        for &b in &node_ids[i + 1..] {
            if let Some(d) = topo.distance(a, b) {
                pairs.push(format!("{a}↔{b} {d}"));
            }
        }
    }
    if !pairs.is_empty() {
        footer.push((
            format!("NUMA distances (10 = local): {}", pairs.join(", ")),
            MUTED,
        ));
    }
    for u in &unplaced {
        footer.push((
            format!("not placed (virtual, or not in this topology): {u}"),
            MUTED,
        ));
    }
    let legend_h = LINE + 4;
    let boxes_w: i64 = col_w.iter().sum::<i64>() + GAP * (ncols as i64 - 1);
    let footer_w = footer
        .iter()
        .map(|(l, _)| l.chars().count() as i64 * CHAR_W)
        .max()
        .unwrap_or(0);
    let header_w = (summary.chars().count() as i64 * 15 / 2).max(source.chars().count() as i64 * 6);
    let width = MARGIN * 2 + boxes_w.max(footer_w).max(header_w).max(560);
    let boxes_h: i64 = row_h.iter().sum::<i64>() + GAP * (row_h.len() as i64 - 1).max(0);
    let height = MARGIN + header_h + boxes_h + GAP + footer.len() as i64 * LINE + legend_h + MARGIN;

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="ringside-topology" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="11" role="img" aria-label="{}">"#,
        escape(&format!("machine topology: {summary}"))
    );
    let _ = write!(out, "<title>{}</title>", escape(&topo.source));
    let _ = write!(
        out,
        r#"<text x="{MARGIN}" y="{}" fill="{INK}" font-size="12" font-weight="bold">{}</text>"#,
        MARGIN + 12,
        escape(&summary)
    );
    let _ = write!(
        out,
        r#"<text x="{MARGIN}" y="{}" fill="{MUTED}" font-size="10">{}</text>"#,
        MARGIN + 12 + LINE,
        escape(&source)
    );

    let mut y = MARGIN + header_h;
    for (r, row) in boxes.chunks(ncols).enumerate() {
        let mut x = MARGIN;
        for (c, b) in row.iter().enumerate() {
            draw_box(
                &mut out,
                b,
                x,
                y,
                col_w[c],
                row_h[r],
                &|cpu| {
                    (
                        !reactor_at(cpu).is_empty(),
                        !highlight_at(&|p| *p == Place::Cpu(cpu)).is_empty(),
                    )
                },
                &|d| {
                    (
                        !device_marks(d).is_empty(),
                        !highlight_at(&|p| matches!(p, Place::Device(n) if dev_matches(n, d)))
                            .is_empty(),
                    )
                },
                &dev_text,
                b.node
                    .is_some_and(|n| !highlight_at(&|p| *p == Place::Node(n)).is_empty()),
                topo,
            );
            x += col_w[c] + GAP;
        }
        y += row_h[r] + GAP;
    }
    if boxes.is_empty() {
        y += GAP;
    }
    for (l, colour) in &footer {
        y += LINE;
        let _ = write!(
            out,
            r#"<text x="{MARGIN}" y="{}" fill="{colour}">{}</text>"#,
            y - 4,
            escape(l)
        );
    }
    // Legend.
    let ly = y + 6;
    let mut lx = MARGIN;
    for (fill, stroke, text) in [
        (REACTOR, REACTOR, "reactor"),
        (CELL_FILL, WARN, "finding"),
        (NIC_FILL, NIC_STROKE, "NIC"),
        (DISK_FILL, DISK_STROKE, "storage"),
    ] {
        let _ = write!(
            out,
            r#"<rect x="{lx}" y="{ly}" width="12" height="12" fill="{fill}" stroke="{stroke}" stroke-width="2"/><text x="{}" y="{}" fill="{MUTED}">{text}</text>"#,
            lx + 16,
            ly + 10
        );
        lx += 16 + text.len() as i64 * CHAR_W + 14;
    }
    out.push_str("</svg>");
    out
}

#[allow(clippy::too_many_arguments)]
fn draw_box(
    out: &mut String,
    b: &NodeBox,
    x: i64,
    y: i64,
    w: i64,
    h: i64,
    cpu_state: &dyn Fn(u32) -> (bool, bool),
    dev_state: &dyn Fn(&PciDevice) -> (bool, bool),
    dev_text: &dyn Fn(&PciDevice) -> String,
    highlighted: bool,
    topo: &Topology,
) {
    let (stroke, sw) = if highlighted {
        (WARN, 2.5)
    } else {
        (MUTED, 1.0)
    };
    let id = b
        .node
        .map_or_else(|| "unknown".to_string(), |n| n.to_string());
    let _ = write!(
        out,
        r#"<g class="numa-node" data-node="{id}"><rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{BOX_FILL}" stroke="{stroke}" stroke-width="{sw}"/>"#
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" fill="{INK}" font-weight="bold">{}</text>"#,
        x + PAD,
        y + PAD + 11,
        escape(&b.title)
    );
    let top = y + PAD + LINE + 4;
    for (i, &cpu) in b.cpus.iter().enumerate() {
        let i = i as i64;
        let cx = x + PAD + (i % MAX_CELLS_PER_ROW) * (CELL_W + CELL_GAP);
        let cy = top + (i / MAX_CELLS_PER_ROW) * (CELL_H + CELL_GAP);
        let (reactor, warn) = cpu_state(cpu);
        let (fill, text) = if reactor {
            (REACTOR, "#ffffff")
        } else {
            (CELL_FILL, INK)
        };
        let (stroke, sw) = if warn {
            (WARN, 2.5)
        } else {
            (CELL_STROKE, 1.0)
        };
        let class = match (reactor, warn) {
            (true, true) => "cpu reactor highlight",
            (true, false) => "cpu reactor",
            (false, true) => "cpu highlight",
            (false, false) => "cpu",
        };
        let tip = topo.cpus.iter().find(|c| c.os_index == cpu).map_or_else(
            || format!("cpu {cpu}"),
            |c| format!("cpu {cpu} · core {} · package {}", c.core, c.package),
        );
        let _ = write!(
            out,
            r#"<g class="{class}" data-cpu="{cpu}"><title>{}</title><rect x="{cx}" y="{cy}" width="{CELL_W}" height="{CELL_H}" rx="2" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"/><text x="{}" y="{}" fill="{text}" text-anchor="middle">{cpu}</text></g>"#,
            escape(&tip),
            cx + CELL_W / 2,
            cy + CELL_H - 6
        );
    }
    let mut dy = top + b.cpu_rows() * (CELL_H + CELL_GAP) + PAD / 2;
    for d in &b.devices {
        let (fill, stroke) = if d.is_network() {
            (NIC_FILL, NIC_STROKE)
        } else if d.is_storage() {
            (DISK_FILL, DISK_STROKE)
        } else {
            (OTHER_FILL, CELL_STROKE)
        };
        let (marked, warn) = dev_state(d);
        let (stroke, sw) = match (warn, marked) {
            (true, _) => (WARN, 2.5),
            (false, true) => (stroke, 2.5),
            (false, false) => (stroke, 1.0),
        };
        let tip = d.name.clone().unwrap_or_else(|| d.bdf.clone());
        let _ = write!(
            out,
            r#"<g class="pci {}" data-bdf="{}"><title>{}</title><rect x="{}" y="{dy}" width="{}" height="{DEV_H}" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"/><text x="{}" y="{}" fill="{INK}">{}</text></g>"#,
            escape(&d.class),
            escape(&d.bdf),
            escape(&tip),
            x + PAD,
            w - 2 * PAD,
            x + PAD + 6,
            dy + DEV_H - 7,
            escape(&dev_text(d))
        );
        dy += DEV_H + CELL_GAP;
    }
    for (l, colour) in &b.lines {
        dy += LINE;
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" fill="{colour}">{}</text>"#,
            x + PAD,
            dy - 4,
            escape(l)
        );
    }
    out.push_str("</g>");
}

/// `s` cut to `max` characters, keeping the start.
fn shorten_back(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let head: String = s.chars().take(max - 1).collect();
    format!("{head}…")
}

/// `s` cut to `max` characters, keeping the end (`…/fixtures/topology/two-socket.xml`).
fn shorten_front(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let tail: String = s.chars().skip(n - (max - 1)).collect();
    format!("…{tail}")
}

fn human_bytes(b: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if b >= GIB {
        format!("{:.1} GiB", b as f64 / GIB as f64).replace(".0 ", " ")
    } else {
        format!("{} MiB", b / MIB)
    }
}

fn human_speed(mbps: u64) -> String {
    if mbps >= 1000 && mbps % 1000 == 0 {
        format!("{} Gb/s", mbps / 1000)
    } else if mbps >= 1000 {
        format!("{:.1} Gb/s", mbps as f64 / 1000.0)
    } else {
        format!("{mbps} Mb/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{CpuInfo, NumaNodeInfo};

    fn two_socket() -> Topology {
        Topology {
            source: "test <two-socket> & more".into(),
            nodes: (0..2)
                .map(|n| NumaNodeInfo {
                    os_index: n,
                    memory_bytes: Some(64 << 30),
                    cpus: (n * 4..n * 4 + 4).collect(),
                    distances: if n == 0 { vec![10, 21] } else { vec![21, 10] },
                })
                .collect(),
            cpus: (0..8)
                .map(|i| CpuInfo {
                    os_index: i,
                    core: i / 2,
                    package: i / 4,
                    node: Some(i / 4),
                })
                .chain(std::iter::once(CpuInfo {
                    os_index: 8,
                    core: 4,
                    package: 2,
                    node: None,
                }))
                .collect(),
            pci: vec![
                PciDevice {
                    bdf: "0000:81:00.0".into(),
                    class: "network".into(),
                    name: Some("Mellanox <ConnectX-4 Lx>".into()),
                    node: Some(1),
                    netdevs: vec!["ens1f0".into()],
                    link_speed_mbps: Some(25_000),
                    ..PciDevice::default()
                },
                PciDevice {
                    bdf: "0000:01:00.0".into(),
                    class: "storage".into(),
                    node: Some(0),
                    block_devices: vec!["nvme0n1".into()],
                    ..PciDevice::default()
                },
                PciDevice {
                    bdf: "0000:c1:00.0".into(),
                    class: "network".into(),
                    node: None,
                    netdevs: vec!["eno1".into()],
                    ..PciDevice::default()
                },
            ],
        }
    }

    /// A small well-formedness check: balanced tags, quoted attributes, no raw `<` or `&` in
    /// text, only the five predefined entities.
    fn assert_well_formed(svg: &str) {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = svg;
        let check_text = |t: &str| {
            assert!(!t.contains('>'), "raw > in text {t:?}");
            let mut s = t;
            while let Some(i) = s.find('&') {
                let ent = &s[i..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                        .iter()
                        .any(|e| ent.starts_with(e)),
                    "bad entity at {:?}",
                    &ent[..ent.len().min(10)]
                );
                s = &s[i + 1..];
            }
        };
        assert!(svg.starts_with("<svg "), "starts with the svg element");
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open]);
            let close = rest[open..].find('>').expect("unclosed tag") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "< inside tag {tag:?}");
            assert_eq!(
                tag.matches('"').count() % 2,
                0,
                "unbalanced quotes in {tag:?}"
            );
            // Attribute values: no raw < or &.
            for (i, part) in tag.split('"').enumerate() {
                if i % 2 == 1 {
                    check_text(part);
                }
            }
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack.pop().unwrap_or_else(|| panic!("stray </{name}>"));
                assert_eq!(top, name, "mismatched close tag");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().expect("tag name");
                stack.push(name);
            }
            rest = &rest[close + 1..];
            if stack.is_empty() {
                assert!(rest.trim().is_empty(), "content after the root element");
            }
        }
        assert!(stack.is_empty(), "unclosed elements {stack:?}");
    }

    #[test]
    fn picture_is_well_formed_and_shows_everything() {
        let t = two_socket();
        let marks = vec![
            Mark::Reactor {
                cpu: 1,
                label: "reactor 0".into(),
            },
            Mark::Reactor {
                cpu: 5,
                label: "reactor 1".into(),
            },
            Mark::Memory {
                node: 0,
                label: "buffers 2 GiB".into(),
            },
            Mark::Device {
                name: "ens1f0".into(),
                label: "listener 10.0.0.1:4420".into(),
            },
            Mark::Highlight {
                place: Place::Cpu(1),
                label: "remote from its NIC".into(),
            },
        ];
        let svg = render_svg(&t, &marks);
        assert_well_formed(&svg);
        for n in 0..2 {
            assert!(
                svg.contains(&format!("NUMA node {n} · 64 GiB · package {n}")),
                "node {n}"
            );
            assert!(svg.contains(&format!("data-node=\"{n}\"")));
        }
        assert!(
            svg.contains("NUMA node unknown"),
            "a box for CPUs/devices without a node"
        );
        for c in 0..=8 {
            assert!(svg.contains(&format!("data-cpu=\"{c}\"")), "cpu {c} drawn");
            assert_eq!(
                svg.matches(&format!("data-cpu=\"{c}\"")).count(),
                1,
                "cpu {c} once"
            );
        }
        for d in [
            "0000:81:00.0 ens1f0 · 25 Gb/s",
            "0000:01:00.0 nvme0n1",
            "0000:c1:00.0 eno1",
        ] {
            assert!(svg.contains(d), "device {d}");
        }
        // The NIC is drawn inside node 1's group, the SSD inside node 0's.
        let node1 = &svg[svg.find("data-node=\"1\"").expect("node 1")..];
        let node1 = &node1[..node1[1..].find("data-node=").map_or(node1.len(), |i| i + 1)];
        assert!(node1.contains("ens1f0") && !node1.contains("nvme0n1"));
        assert!(svg.contains(r#"class="cpu reactor highlight" data-cpu="1""#));
        assert!(svg.contains(r#"class="cpu reactor" data-cpu="5""#));
        assert!(svg.contains(r#"class="cpu" data-cpu="0""#));
        assert!(svg.contains("cpu 1: reactor 0") && svg.contains("! cpu 1: remote from its NIC"));
        assert!(svg.contains("memory: buffers 2 GiB"));
        assert!(svg.contains("NUMA distances (10 = local): 0↔1 21"));
        assert!(svg.contains("← listener 10.0.0.1:4420"));
        // Self-contained: nothing fetched, nothing executed.
        assert!(!svg.contains("href") && !svg.contains("<script") && !svg.contains("<style"));
        assert_eq!(svg.matches("http").count(), 1, "only the namespace URI");
    }

    #[test]
    fn text_is_escaped() {
        let t = two_socket();
        let marks = vec![Mark::Reactor {
            cpu: 2,
            label: "r<0> & \"q\"".into(),
        }];
        let svg = render_svg(&t, &marks);
        assert_well_formed(&svg);
        assert!(svg.contains("r&lt;0&gt; &amp; &quot;q&quot;"));
        assert!(svg.contains("test &lt;two-socket&gt; &amp; more"));
        assert!(svg.contains("Mellanox &lt;ConnectX-4 Lx&gt;"));
        assert!(!svg.contains("r<0>") && !svg.contains("<two-socket>"));
        assert_eq!(
            escape("a\u{1}b"),
            "a\u{fffd}b",
            "control characters are not XML"
        );
        assert_eq!(shorten_front("abcdef", 4), "…def");
        assert_eq!(shorten_front("abc", 4), "abc");
    }

    #[test]
    fn output_is_deterministic_and_marks_elsewhere_are_listed() {
        let t = two_socket();
        let marks = vec![
            Mark::Reactor {
                cpu: 99,
                label: "reactor 7".into(),
            },
            Mark::Device {
                name: "nvme9n1".into(),
                label: "ns 1".into(),
            },
            Mark::Highlight {
                place: Place::Node(4),
                label: "buffers here".into(),
            },
        ];
        let a = render_svg(&t, &marks);
        assert_eq!(
            a,
            render_svg(&t.clone(), &marks.clone()),
            "same input, same bytes"
        );
        assert_well_formed(&a);
        for s in [
            "reactor 7 (cpu 99)",
            "ns 1 (nvme9n1)",
            "buffers here (node 4)",
        ] {
            assert!(
                a.contains(&format!(
                    "not placed (virtual, or not in this topology): {s}"
                )),
                "{s} listed"
            );
        }
    }

    #[test]
    fn empty_and_large_topologies() {
        let empty = render_svg(&Topology::default(), &[]);
        assert_well_formed(&empty);
        assert!(empty.contains("topology unknown"));

        // Four nodes of 64 CPUs: rows of two boxes, cells wrap at 16 per row.
        let big = Topology {
            source: "big".into(),
            nodes: (0..4)
                .map(|n| NumaNodeInfo {
                    os_index: n,
                    memory_bytes: Some(3 << 29),
                    cpus: (n * 64..n * 64 + 64).collect(),
                    distances: vec![],
                })
                .collect(),
            cpus: (0..256)
                .map(|i| CpuInfo {
                    os_index: i,
                    core: i / 2,
                    package: i / 64,
                    node: Some(i / 64),
                })
                .collect(),
            pci: vec![],
        };
        let svg = render_svg(&big, &[]);
        assert_well_formed(&svg);
        assert!(svg.contains("NUMA node 3 · 1.5 GiB"));
        assert_eq!(svg.matches("class=\"cpu\"").count(), 256);
    }

    #[test]
    fn marks_for_a_target() {
        use crate::finding::{FindingKind, Severity};
        use crate::sample::{ListenerInfo, NamespaceInfo, ReactorInfo};
        let info = TargetInfo {
            reactors: vec![
                ReactorInfo {
                    index: 1,
                    core: 5,
                    tid: None,
                },
                ReactorInfo {
                    index: 0,
                    core: 1,
                    tid: None,
                },
            ],
            listeners: vec![ListenerInfo {
                transport: crate::sample::Transport::Tcp,
                address: "10.0.0.1:4420".into(),
                netdev: Some("ens1f0".into()),
            }],
            namespaces: vec![
                NamespaceInfo {
                    nqn: "nqn.x".into(),
                    nsid: 1,
                    backend: crate::sample::BackendKind::Uring,
                    device: Some("/dev/nvme0n1".into()),
                },
                NamespaceInfo {
                    nqn: "nqn.x".into(),
                    nsid: 2,
                    backend: crate::sample::BackendKind::Uring,
                    device: Some("/var/tmp/disk.img".into()),
                },
            ],
            ..TargetInfo::default()
        };
        let memory = MemorySample {
            buffer_bytes_by_node: vec![(1, 3 << 30), (0, 0)],
            total_bytes_by_node: vec![(1, 4 << 30)],
            policy: None,
        };
        let finding = Finding {
            kind: FindingKind::NumaMisplacement,
            severity: Severity::Warning,
            subject: Subject::Reactor { index: 0 },
            summary: "reactor 0 runs on node 0, its NIC ens1f0 on node 1".into(),
            evidence: vec![],
            windows: 3,
            since_ns: 0,
            until_ns: 0,
            confidence: 0.9,
            cost: None,
        };
        let marks = marks_for(&info, Some(&memory), &[finding]);
        assert_eq!(
            marks,
            vec![
                Mark::Reactor {
                    cpu: 1,
                    label: "reactor 0".into()
                },
                Mark::Reactor {
                    cpu: 5,
                    label: "reactor 1".into()
                },
                Mark::Memory {
                    node: 1,
                    label: "target buffers 3 GiB".into()
                },
                Mark::Device {
                    name: "ens1f0".into(),
                    label: "listener tcp 10.0.0.1:4420".into()
                },
                Mark::Device {
                    name: "nvme0n1".into(),
                    label: "ns 1 (uring)".into()
                },
                Mark::Highlight {
                    place: Place::Cpu(1),
                    label: "numa_misplacement: reactor 0 runs on node 0, its NIC ens1f0 on node 1"
                        .into()
                },
            ]
        );
        let svg = render_svg(&two_socket(), &marks);
        assert_well_formed(&svg);
        assert!(svg.contains("memory: target buffers 3 GiB"));
        assert!(svg.contains("← ns 1 (uring)"));
        assert!(!svg.contains("not placed"), "everything is on the picture");
        assert_eq!(shorten_back("abcdef", 4), "abc…");
    }
}
