; example.com for gdnsd: the same data as the zone in config/steerd.toml.
; steerd defaults: static records TTL 3600, apex NS TTL 86400, SOA TTL 3600.
$TTL 3600
@        3600  SOA  ns1.example.com. hostmaster.example.com. (
                    2026112201 ; serial
                    7200       ; refresh
                    3600       ; retry
                    1209600    ; expire
                    300 )      ; minimum (negative TTL)
@        86400 NS   ns1.example.com.
@        86400 NS   ns2.example.com.
@              MX   10 mail.example.com.
@              TXT  "v=spf1 mx -all"
; CAA 0 issue "letsencrypt.org" (gdnsd only takes CAA in RFC 3597 form)
@              TYPE257 \# 22 000569737375656c657473656e63727970742e6f7267

ns1            A    127.0.0.1
ns2            A    127.0.0.2
mail           A    192.0.2.25
static         A    192.0.2.10
static         A    192.0.2.11
static         AAAA 2001:db8::10
docs           CNAME static.example.com.

; delegated child zone, with glue
lab            NS   ns1.lab.example.com.
ns1.lab        A    192.0.2.53

; steered names. "30/30" pins the TTL at 30 (a DYNC TTL is MAX[/MIN]).
www      30/30 DYNC geoip!www
split    30/30 DYNC weighted!split_cdn
assets   30/30 DYNC metafo!assets
