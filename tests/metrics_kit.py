"""Reading `/metrics` in tests: the Prometheus text parsed by prometheus-client's own
parser into samples looked up by name and labels."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Scrape:
    samples: dict[Key, float]
    types: dict[str, str]  # family name -> counter, gauge, histogram

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[Key, float] = {}
        types = {}
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            for sample in family.samples:
                samples[sample.name, frozenset(sample.labels.items())] = sample.value
        return cls(samples, types)

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; KeyError if the server does not expose it."""
        return self.samples[name, frozenset(labels.items())]

    def values(self, name: str, label: str) -> dict[str, float]:
        """Every sample of `name` by the value of its one label `label`."""
        return {
            dict(labels)[label]: value
            for (sample, labels), value in self.samples.items()
            if sample == name
        }

    def requests(self, route: str, status: int) -> float:
        """How many requests the duration histogram counted (0: no series yet)."""
        labels = frozenset({"route": route, "status": str(status)}.items())
        return self.samples.get(("auth_http_request_duration_seconds_count", labels), 0)

    def without_route(self, route: str) -> dict[Key, float]:
        """Every sample except the histogram's of `route` (a scrape counts itself)."""
        return {
            key: value
            for key, value in self.samples.items()
            if ("route", route) not in key[1]
            or not key[0].startswith("auth_http_request_duration")
        }
