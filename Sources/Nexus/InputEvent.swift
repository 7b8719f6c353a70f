import SpiritCore

extension KeyboardState {
    /// An event from an evdev device: key events are handled, the rest
    /// (EV_SYN, EV_MSC scan codes, EV_LED) ignored.
    public mutating func handle(_ event: InputEvent, applicationCursor: Bool = false) -> KeyAction? {
        guard event.type == InputEvent.key else { return nil }
        return handle(code: event.code, value: event.value, applicationCursor: applicationCursor)
    }
}
