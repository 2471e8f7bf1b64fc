//! `GET /metrics` in Prometheus' text format: requests by route and status, a latency histogram,
//! faces embedded, gallery size.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The service's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<Histogram>,
    faces_embedded: AtomicU64,
}

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Metrics {
    /// Records one request to `route` (the matched path pattern) that ended with `status`.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((route.to_string(), status))
            .or_default() += 1;
        let mut h = self.latency.lock().expect("metrics lock");
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Counts faces run through the network.
    pub fn faces_embedded(&self, n: u64) {
        self.faces_embedded.fetch_add(n, Ordering::Relaxed);
    }

    /// The exposition text, with the gallery's current size and the inference thread's count of
    /// forward passes.
    pub fn render(&self, gallery_faces: usize, forward_passes: u64) -> String {
        let mut out = String::new();
        out += "# HELP ffem_requests_total HTTP requests by route and status.\n";
        out += "# TYPE ffem_requests_total counter\n";
        for ((route, status), n) in self.requests.lock().expect("metrics lock").iter() {
            out += &format!("ffem_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n");
        }
        let h = self.latency.lock().expect("metrics lock");
        out += "# HELP ffem_request_duration_seconds Request latency.\n";
        out += "# TYPE ffem_request_duration_seconds histogram\n";
        for (bound, n) in BUCKETS.iter().zip(h.counts) {
            out += &format!("ffem_request_duration_seconds_bucket{{le=\"{bound}\"}} {n}\n");
        }
        out += &format!(
            "ffem_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
            h.count
        );
        out += &format!("ffem_request_duration_seconds_sum {}\n", h.sum);
        out += &format!("ffem_request_duration_seconds_count {}\n", h.count);
        out += "# HELP ffem_faces_embedded_total Faces run through the network.\n";
        out += "# TYPE ffem_faces_embedded_total counter\n";
        out += &format!(
            "ffem_faces_embedded_total {}\n",
            self.faces_embedded.load(Ordering::Relaxed)
        );
        out += "# HELP ffem_forward_passes_total Network forward passes; faces embedded / passes is the mean batch.\n";
        out += "# TYPE ffem_forward_passes_total counter\n";
        out += &format!("ffem_forward_passes_total {forward_passes}\n");
        out += "# HELP ffem_gallery_faces Faces enrolled in the gallery.\n";
        out += "# TYPE ffem_gallery_faces gauge\n";
        out += &format!("ffem_gallery_faces {gallery_faces}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_counts_add_up() {
        let m = Metrics::default();
        m.request("/v1/embed", 200, 0.02);
        m.request("/v1/embed", 200, 0.3);
        m.request("/v1/embed", 400, 20.0);
        m.faces_embedded(3);
        let text = m.render(5, 2);
        assert!(text.contains("ffem_requests_total{route=\"/v1/embed\",status=\"200\"} 2\n"));
        assert!(text.contains("ffem_requests_total{route=\"/v1/embed\",status=\"400\"} 1\n"));
        assert!(text.contains("ffem_request_duration_seconds_bucket{le=\"0.025\"} 1\n"));
        assert!(text.contains("ffem_request_duration_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("ffem_request_duration_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("ffem_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("ffem_request_duration_seconds_count 3\n"));
        assert!(text.contains("ffem_faces_embedded_total 3\n"));
        assert!(text.contains("ffem_forward_passes_total 2\n"));
        assert!(text.contains("ffem_gallery_faces 5\n"));
    }
}
