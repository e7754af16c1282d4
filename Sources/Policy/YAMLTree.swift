import CYAML

/// A place in a policy file: 1-based line and column, as editors show them.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible, Comparable {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.line, a.column) < (b.line, b.column)
    }
}

/// A YAML node with the place it starts, as the policy loader needs it: scalars keep their text and whether
/// they were written plain (unquoted), so `true` and `"true"` can be told apart.
///
/// The loader accepts the YAML that people write by hand and refuses the parts that only make policies
/// harder to audit or parse: anchors and aliases, explicit tags, complex keys, several documents.
enum YAMLNode: Sendable {
    case scalar(String, plain: Bool, SourceLocation)
    case mapping([(key: String, keyLocation: SourceLocation, value: YAMLNode)], SourceLocation)
    case sequence([YAMLNode], SourceLocation)

    var location: SourceLocation {
        switch self {
        case .scalar(_, _, let l), .mapping(_, let l), .sequence(_, let l): l
        }
    }

    /// A plain scalar that YAML reads as null (`~`, `null`, nothing at all).
    var isNull: Bool {
        if case .scalar(let s, true, _) = self { return s.isEmpty || s == "~" || s == "null" || s == "Null" || s == "NULL" }
        return false
    }

    /// What the node is, for "expected X, found Y" messages.
    var kindName: String {
        switch self {
        case .scalar(let s, let plain, _):
            if isNull { return "null" }
            if plain && (s == "true" || s == "false") { return "a boolean" }
            if plain && Int(s) != nil { return "a number" }
            return "a string"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        }
    }
}

/// Problems found while reading a policy (or a case table), each at a place in the file.
public struct Diagnostic: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable { case error, warning }
    public var severity: Severity
    public var location: SourceLocation
    public var message: String

    public init(_ severity: Severity, _ location: SourceLocation, _ message: String) {
        self.severity = severity
        self.location = location
        self.message = message
    }

    public var description: String { "\(location): \(severity.rawValue): \(message)" }
}

enum YAMLReader {
    /// Refuse inputs larger than this before parsing (a 1,000-rule policy is about 150 KB).
    static let maxBytes = 8 << 20
    /// Refuse nesting deeper than this (no policy needs more than 6).
    static let maxDepth = 64

    /// Parses one YAML document. Throws a single diagnostic on a syntax error or an unsupported construct.
    static func parse(_ bytes: [UInt8], file: String) throws(Diagnostic) -> YAMLNode {
        let start = SourceLocation(file: file, line: 1, column: 1)
        if bytes.count > maxBytes {
            throw Diagnostic(.error, start, "the file is \(bytes.count) bytes; a policy may have at most \(maxBytes) bytes")
        }
        if bytes.isEmpty {
            throw Diagnostic(.error, start, "the file is empty; a policy starts with `version: 1`")
        }
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        defer { parser.deallocate() }
        guard yaml_parser_initialize(parser) == 1 else {
            throw Diagnostic(.error, start, "cannot initialise the YAML parser (out of memory)")
        }
        defer { yaml_parser_delete(parser) }
        return try bytes.withUnsafeBufferPointer { (buffer) throws(Diagnostic) -> YAMLNode in
            yaml_parser_set_input_string(parser, buffer.baseAddress, buffer.count)
            yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING)
            return try build(parser, file: file)
        }
    }

    /// A collection being built. Kept in an array and mutated in place (`stack[top]`), so appending never
    /// copies the collection.
    private struct Frame {
        var isMapping: Bool
        var at: SourceLocation
        var items: [YAMLNode] = []
        var entries: [(key: String, keyLocation: SourceLocation, value: YAMLNode)] = []
        var pendingKey: (String, SourceLocation)? = nil
    }

    private static func location(_ mark: yaml_mark_t, _ file: String) -> SourceLocation {
        SourceLocation(file: file, line: Int(mark.line) + 1, column: Int(mark.column) + 1)
    }

    private static func string(_ p: UnsafeMutablePointer<yaml_char_t>?, length: Int) -> String {
        guard let p else { return "" }
        return String(decoding: UnsafeBufferPointer(start: p, count: length), as: UTF8.self)
    }

    /// Builds the tree from libyaml's events with an explicit stack (no recursion: deep input cannot
    /// exhaust the thread's stack).
    private static func build(_ parser: UnsafeMutablePointer<yaml_parser_t>, file: String) throws(Diagnostic) -> YAMLNode {
        var stack: [Frame] = []
        var root: YAMLNode? = nil
        var documents = 0
        var event = yaml_event_t()

        func fail(_ at: SourceLocation, _ message: String) -> Diagnostic { Diagnostic(.error, at, message) }

        /// Attaches a finished node to its parent (or makes it the root).
        func attach(_ node: YAMLNode) throws(Diagnostic) {
            guard !stack.isEmpty else {
                root = node
                return
            }
            let top = stack.count - 1
            if !stack[top].isMapping {
                stack[top].items.append(node)
            } else if let (key, keyAt) = stack[top].pendingKey {
                stack[top].entries.append((key, keyAt, node))
                stack[top].pendingKey = nil
            } else {
                guard case .scalar(let key, _, let keyAt) = node else {
                    throw fail(node.location, "a mapping key must be a plain word, not \(node.kindName)")
                }
                // Mappings in a policy are small: a linear scan beats a dictionary per mapping.
                if let first = stack[top].entries.first(where: { $0.key == key })?.keyLocation {
                    throw fail(keyAt, "duplicate key '\(key)' (first at line \(first.line), column \(first.column))")
                }
                stack[top].pendingKey = (key, keyAt)
            }
        }

        /// True when the innermost collection is a mapping waiting for a key.
        func expectingKey() -> Bool {
            guard let last = stack.last else { return false }
            return last.isMapping && last.pendingKey == nil
        }

        while true {
            guard yaml_parser_parse(parser, &event) == 1 else {
                let p = parser.pointee
                let problem = p.problem.map { String(cString: $0) } ?? "malformed YAML"
                var message = "YAML syntax error: \(problem)"
                if let context = p.context.map({ String(cString: $0) }) {
                    message += " (\(context) at line \(p.context_mark.line + 1), column \(p.context_mark.column + 1))"
                }
                throw fail(location(p.problem_mark, file), message)
            }
            defer { yaml_event_delete(&event) }
            let at = location(event.start_mark, file)
            switch event.type {
            case YAML_STREAM_START_EVENT, YAML_NO_EVENT:
                continue
            case YAML_STREAM_END_EVENT:
                guard let root else { throw fail(at, "the file holds no YAML document; a policy starts with `version: 1`") }
                return root
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents > 1 { throw fail(at, "a policy file holds one YAML document; found a second one here (`---`)") }
            case YAML_DOCUMENT_END_EVENT:
                continue
            case YAML_ALIAS_EVENT:
                throw fail(at, "YAML aliases (*name) are not allowed in a policy: write the value out")
            case YAML_SCALAR_EVENT:
                let s = event.data.scalar
                if s.anchor != nil { throw fail(at, "YAML anchors (&name) are not allowed in a policy") }
                if s.tag != nil { throw fail(at, "YAML tags (!name) are not allowed in a policy") }
                let text = string(s.value, length: Int(s.length))
                try attach(.scalar(text, plain: s.style == YAML_PLAIN_SCALAR_STYLE, at))
            case YAML_SEQUENCE_START_EVENT:
                let s = event.data.sequence_start
                if s.anchor != nil { throw fail(at, "YAML anchors (&name) are not allowed in a policy") }
                if s.tag != nil { throw fail(at, "YAML tags (!name) are not allowed in a policy") }
                if expectingKey() { throw fail(at, "a mapping key must be a plain word, not a list") }
                if stack.count >= maxDepth { throw fail(at, "nesting deeper than \(maxDepth) levels") }
                stack.append(Frame(isMapping: false, at: at))
            case YAML_MAPPING_START_EVENT:
                let m = event.data.mapping_start
                if m.anchor != nil { throw fail(at, "YAML anchors (&name) are not allowed in a policy") }
                if m.tag != nil { throw fail(at, "YAML tags (!name) are not allowed in a policy") }
                if expectingKey() { throw fail(at, "a mapping key must be a plain word, not a mapping") }
                if stack.count >= maxDepth { throw fail(at, "nesting deeper than \(maxDepth) levels") }
                stack.append(Frame(isMapping: true, at: at))
            case YAML_SEQUENCE_END_EVENT:
                guard let frame = stack.popLast(), !frame.isMapping else { throw fail(at, "malformed YAML") }
                try attach(.sequence(frame.items, frame.at))
            case YAML_MAPPING_END_EVENT:
                guard let frame = stack.popLast(), frame.isMapping, frame.pendingKey == nil else { throw fail(at, "malformed YAML") }
                try attach(.mapping(frame.entries, frame.at))
            default:
                throw fail(at, "malformed YAML")
            }
        }
    }
}
