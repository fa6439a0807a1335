"""The nftables table as rendered from the daemon's model."""

from __future__ import annotations

from network.firewall import BridgeSpec, PortRule, render, table_name


def test_table_name_is_per_daemon() -> None:
    assert table_name("pyd0") == "pydockerd_pyd0"
    assert table_name("br-x.y") == "pydockerd_br_x_y"


def test_render_dnat_localhost_hairpin_isolation_internal() -> None:
    bridges = [BridgeSpec("pyd0", "10.1.0.0/24", masquerade=False),
               BridgeSpec("br-a", "10.2.0.0/24", masquerade=True),
               BridgeSpec("br-i", "10.3.0.0/24", internal=True, masquerade=True)]
    rules = [PortRule("tcp", "", 8080, "10.1.0.2", 80), PortRule("udp", "127.0.0.1", 5353, "10.1.0.2", 53)]
    text = render("T", bridges, rules)
    assert text.startswith("table ip T {}\ndelete table ip T\ntable ip T {")
    assert "    tcp dport 8080 dnat to 10.1.0.2:80\n" in text
    assert "    ip daddr 127.0.0.1 udp dport 5353 dnat to 10.1.0.2:53\n" in text
    assert text.count("fib daddr type local jump publish") == 2
    assert 'ip saddr 127.0.0.0/8 oifname "pyd0" masquerade' in text
    assert "ip saddr 10.1.0.0/24 ip daddr 10.1.0.0/24 ct status dnat masquerade" in text
    # --ip-masq=false (pyd0) and --internal (br-i): no NAT to the outside.
    assert 'ip saddr 10.1.0.0/24 oifname != "pyd0" masquerade' not in text
    assert 'ip saddr 10.2.0.0/24 oifname != "br-a" masquerade' in text
    assert 'ip saddr 10.3.0.0/24 oifname != "br-i"' not in text
    assert 'iifname "pyd0" oifname { "br-a", "br-i" } drop' in text
    assert 'iifname "br-i" oifname != "br-i" drop' in text


def test_render_icc_disabled_drops_traffic_within_the_bridge() -> None:
    text = render("T", [BridgeSpec("br-n", "10.4.0.0/24", icc=False), BridgeSpec("br-y", "10.5.0.0/24")], [])
    assert 'iifname "br-n" oifname "br-n" drop' in text
    assert 'iifname "br-y" oifname "br-y" drop' not in text
    # Published ports keep working: their DNAT is accepted before the drop.
    assert text.index("ct status dnat accept") < text.index('iifname "br-n" oifname "br-n" drop')
