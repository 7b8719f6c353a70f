/// Milliseconds of CLOCK_BOOTTIME, written from microseconds without
/// floating-point formatting (String(format:) would pull ICU into the static
/// binary): `1234.567`.
public func formatMilliseconds(_ micros: Int64) -> String {
    let sign = micros < 0 ? "-" : ""
    let magnitude = micros.magnitude
    let fraction = String(magnitude % 1000)
    return sign + String(magnitude / 1000) + "." + String(repeating: "0", count: 3 - fraction.count) + fraction
}
