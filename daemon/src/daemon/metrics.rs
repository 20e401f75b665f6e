//! `vnetd --metrics ADDR`: the daemon's counters in the Prometheus text format, built with
//! `prometheus-client` from a fresh snapshot at every scrape. Building the registry per scrape
//! means a series exists only while its subject does: a removed link or rule, or a pair that
//! left the Proxy's top list, is gone from the next scrape (no stale series).
//!
//! Served over HTTP/1.x on `GET /metrics` by a minimal responder: a scrape is one GET, so
//! the daemon needs no HTTP framework; requests are read up to 8 KiB and 5 s, then closed.

use super::*;
use prometheus_client::encoding::prometheus_text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The Proxy's pairs exported, heaviest first: operators want the top talkers, and the label
/// cardinality must stay bounded whatever the traffic.
pub(super) const TOP_PAIRS: usize = 20;
/// The window of the exported pair rates (SPEC 5.1's default).
const PAIR_WINDOW_MS: u64 = 2000;

type Labels = Vec<(&'static str, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// One metric family per name, filled from the snapshot.
struct Out {
    registry: Registry,
}

impl Out {
    fn counters(&mut self, name: &str, help: &str, rows: Vec<(Labels, u64)>) {
        let family = Counters::default();
        for (labels, v) in rows {
            family.get_or_create(&labels).inc_by(v);
        }
        self.registry.register(name, help, family);
    }

    fn gauges(&mut self, name: &str, help: &str, rows: Vec<(Labels, f64)>) {
        let family = Gauges::default();
        for (labels, v) in rows {
            family.get_or_create(&labels).set(v);
        }
        self.registry.register(name, help, family);
    }
}

/// Frames and bytes of every port, in and out.
fn port_rows(kind: &'static str, ports: &[(String, PortCounters)]) -> [Vec<(Labels, u64)>; 4] {
    let row = |name: &String, v: u64| (vec![(kind, name.clone())], v);
    [
        ports.iter().map(|(n, c)| row(n, c.rx_frames)).collect(),
        ports.iter().map(|(n, c)| row(n, c.rx_bytes)).collect(),
        ports.iter().map(|(n, c)| row(n, c.tx_frames)).collect(),
        ports.iter().map(|(n, c)| row(n, c.tx_bytes)).collect(),
    ]
}

impl Daemon {
    /// The metrics text of this daemon now.
    pub(super) fn metrics_text(&self) -> String {
        self.plane.credit_fast_path();
        let stats = self.stats();
        let mut out = Out {
            registry: Registry::with_prefix("vnet"),
        };
        for (kind, ports) in [("interface", &stats.interfaces), ("link", &stats.links)] {
            let [rxf, rxb, txf, txb] = port_rows(kind, ports);
            out.counters(&format!("{kind}_rx_frames"), "Frames received", rxf);
            out.counters(&format!("{kind}_rx_bytes"), "Bytes received", rxb);
            out.counters(&format!("{kind}_tx_frames"), "Frames sent", txf);
            out.counters(&format!("{kind}_tx_bytes"), "Bytes sent", txb);
        }
        let global = self.plane.global.snapshot().drops;
        let drops = drop_rows(&stats, &global);
        out.counters("drops", "Frames dropped, by port and reason", drops);
        let rules = |f: fn(&RuleInfo) -> u64| {
            let rows = stats.rules.iter();
            rows.map(|r| (vec![("rule", r.rule.to_string())], f(r)))
                .collect()
        };
        out.counters(
            "rule_frames",
            "Frames a rule fired for",
            rules(|r| r.frames),
        );
        out.counters("rule_bytes", "Bytes a rule fired for", rules(|r| r.bytes));
        let up = self.link_infos().into_iter().map(|l| {
            let v = if l.up { 1.0 } else { 0.0 };
            (vec![("link", l.peer)], v)
        });
        out.gauges("link_up", "Whether the link is connected", up.collect());
        self.link_health(&mut out);
        self.vttif_metrics(&mut out);
        let mut text = String::new();
        if let Err(e) = encode(&mut text, &out.registry) {
            tracing::warn!("metrics: {e}");
        }
        text
    }

    /// Per-link latency and loss gauges (`vnet_link_latency_ms`, `vnet_link_loss`) belong
    /// here, from the links' keepalive estimates (the underlay's passive estimator, SPEC 5.2),
    /// once the links keep them.
    fn link_health(&self, _out: &mut Out) {}

    fn vttif_metrics(&self, out: &mut Out) {
        let v = self.vttif.state();
        let one = |n: u64| vec![(Vec::new(), n)];
        out.counters(
            "vttif_reports_sent",
            "VTTIF reports sent to the Proxy",
            one(v.reports_sent),
        );
        let failed = one(v.reports_failed);
        out.counters(
            "vttif_reports_failed",
            "VTTIF reports not delivered",
            failed,
        );
        let is_proxy = v.proxy.as_ref().is_some_and(|p| p.name == self.cfg.name);
        if !is_proxy {
            return;
        }
        out.counters(
            "vttif_reports_taken",
            "Reports taken by the Proxy",
            one(v.reports_taken),
        );
        let refused = v
            .refused
            .into_iter()
            .map(|(why, n)| (vec![("reason", why)], n));
        out.counters(
            "vttif_reports_refused",
            "Reports refused, by reason",
            refused.collect(),
        );
        out.counters(
            "vttif_pair_updates_dropped",
            "Pair updates over the caps",
            one(v.dropped),
        );
        let pairs = vec![(Vec::new(), v.pairs as f64)];
        out.gauges("vttif_pairs", "Pairs in the Proxy's history", pairs);
        let top = self.vttif.top_pairs(PAIR_WINDOW_MS, TOP_PAIRS).into_iter();
        let rows = top.map(|p| {
            let labels = vec![
                ("src", p.src.to_string()),
                ("dst", p.dst.to_string()),
                ("src_daemon", p.src_daemon),
                ("dst_daemon", p.dst_daemon.unwrap_or_default()),
            ];
            (labels, p.bytes_per_s)
        });
        let help = "The heaviest pairs' bytes per second over 2 s (at most 20 pairs)";
        out.gauges("vttif_pair_bytes_per_second", help, rows.collect());
    }

    /// Serves `GET /metrics` at `addr` until the daemon stops.
    pub(super) async fn serve_metrics(self: Arc<Daemon>, addr: SocketAddr) {
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%addr, "metrics: cannot listen: {e}");
                return;
            }
        };
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let d = self.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, d.scrape(stream)).await;
            });
        }
    }

    async fn scrape(&self, mut stream: TcpStream) -> io::Result<()> {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 || head.len() + n > 8192 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
        let (status, body) = if line.starts_with(b"GET /metrics ") || line == b"GET /metrics" {
            let text = blocking(|| self.metrics_text());
            ("200 OK", text)
        } else {
            (
                "404 Not Found",
                "only GET /metrics is served here\n".to_string(),
            )
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await
    }
}

/// Drops by port and reason, and those not attributed to a port (`port=""`).
fn drop_rows(stats: &Stats, global: &BTreeMap<String, u64>) -> Vec<(Labels, u64)> {
    let mut rows = Vec::new();
    let ports = [("interface", &stats.interfaces), ("link", &stats.links)];
    for (kind, list) in ports {
        for (name, c) in list.iter() {
            for (reason, n) in &c.drops {
                let labels = vec![
                    ("port", format!("{kind}:{name}")),
                    ("reason", reason.clone()),
                ];
                rows.push((labels, *n));
            }
        }
    }
    for (reason, n) in global {
        let labels = vec![("port", String::new()), ("reason", reason.clone())];
        rows.push((labels, *n));
    }
    rows
}
