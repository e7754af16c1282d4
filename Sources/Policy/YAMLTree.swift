import CYAML
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

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

/// A parsed YAML document, flat: every node in one array in document order (a collection is followed by its
/// children, and records where its subtree ends), every scalar's bytes in one buffer. Building it costs one
/// append per libyaml event and no allocation per node; a `SourceLocation` (and a `String` for a scalar) is
/// only made when the loader asks for it.
final class YAMLDocument {
    enum Kind: UInt8 { case scalar, mapping, sequence }

    struct Node {
        var kind: Kind
        /// A scalar written plain (unquoted), so `true` and `"true"` can be told apart.
        var plain: Bool
        var line: Int32
        var column: Int32
        /// Scalars: offset and length of the text in `text`. Collections: number of items (entries for mappings).
        var start: Int32
        var count: Int32
        /// The index just past this node's subtree.
        var end: Int32
    }

    let file: String
    /// Owned buffers (freed in deinit), so that reading a node never touches a reference count.
    let nodes: UnsafeMutableBufferPointer<Node>
    let text: UnsafeMutableBufferPointer<UInt8>

    private let nodeCapacity: Int
    private let textCapacity: Int

    /// Takes ownership of both buffers (each `capacity` elements from `YAMLReader.Buffer`); in deinit they go
    /// back to the spare slot for the next parse, or are freed.
    init(file: String, nodes: (UnsafeMutableBufferPointer<Node>, capacity: Int), text: (UnsafeMutableBufferPointer<UInt8>, capacity: Int)) {
        self.file = file
        self.nodes = nodes.0
        self.text = text.0
        nodeCapacity = nodes.capacity
        textCapacity = text.capacity
    }

    deinit {
        YAMLReader.Spare.give(nodes: YAMLReader.Spare.Block(UnsafeMutableRawPointer(nodes.baseAddress!), nodeCapacity * MemoryLayout<Node>.stride),
                              text: YAMLReader.Spare.Block(UnsafeMutableRawPointer(text.baseAddress!), textCapacity))
    }

    var root: YAMLNode { YAMLNode(doc: self, index: 0) }
}

/// A YAML node with the place it starts, as the policy loader needs it: scalars keep their text and whether
/// they were written plain (unquoted), so `true` and `"true"` can be told apart.
///
/// A view into a ``YAMLDocument``: the document must outlive its nodes (the loader holds it for the whole load;
/// the reference is not counted, so walking the tree costs no reference counting).
///
/// The loader accepts the YAML that people write by hand and refuses the parts that only make policies
/// harder to audit or parse: anchors and aliases, explicit tags, complex keys, several documents.
struct YAMLNode {
    unowned(unsafe) let doc: YAMLDocument
    let index: Int

    private var raw: YAMLDocument.Node { doc.nodes[index] }

    var kind: YAMLDocument.Kind { raw.kind }
    var isScalar: Bool { raw.kind == .scalar }
    var isMapping: Bool { raw.kind == .mapping }
    var isSequence: Bool { raw.kind == .sequence }
    /// A scalar written without quotes.
    var isPlainScalar: Bool { let r = raw; return r.kind == .scalar && r.plain }
    /// Items of a sequence, entries of a mapping, 0 for a scalar.
    var count: Int { let r = raw; return r.kind == .scalar ? 0 : Int(r.count) }

    var location: SourceLocation {
        let r = raw
        return SourceLocation(file: doc.file, line: Int(r.line), column: Int(r.column))
    }

    /// A scalar's text ("" for a collection).
    var text: String {
        let r = raw
        guard r.kind == .scalar else { return "" }
        return String(decoding: UnsafeBufferPointer(rebasing: doc.text[Int(r.start)..<Int(r.start + r.count)]), as: UTF8.self)
    }

    /// Calls `body` with a scalar's bytes (empty for a collection).
    @inline(__always)
    func withBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        let r = raw
        let count = r.kind == .scalar ? Int(r.count) : 0
        return body(UnsafeBufferPointer(rebasing: doc.text[Int(r.start)..<Int(r.start) + count]))
    }

    /// True when this is a scalar whose text is exactly `s` (compared as bytes, no String made).
    func textIs(_ s: StaticString) -> Bool {
        guard isScalar else { return false }
        return withBytes { b in
            b.count == s.utf8CodeUnitCount && (b.count == 0 || memcmp(b.baseAddress!, s.utf8Start, b.count) == 0)
        }
    }

    /// The index of this scalar's text in `keys` (compared as bytes, no String made).
    func index(in keys: KeySet) -> Int? {
        guard isScalar else { return nil }
        return withBytes { b in
            for i in keys.names.indices {
                let k = keys.bytes[i]
                if k.count == b.count && (b.count == 0 || memcmp(b.baseAddress!, k.baseAddress!, b.count) == 0) { return i }
            }
            return nil
        }
    }

    /// A plain scalar that YAML reads as null (`~`, `null`, nothing at all).
    var isNull: Bool {
        let r = raw
        guard r.kind == .scalar && r.plain else { return false }
        switch r.count {
        case 0: return true
        case 1: return doc.text[Int(r.start)] == UInt8(ascii: "~")
        case 4: return textIs("null") || textIs("Null") || textIs("NULL")
        default: return false
        }
    }

    /// A plain `true` or `false`.
    var boolValue: Bool? {
        guard isPlainScalar else { return nil }
        if textIs("true") { return true }
        if textIs("false") { return false }
        return nil
    }

    /// What the node is, for "expected X, found Y" messages.
    var kindName: String {
        switch kind {
        case .scalar:
            if isNull { return "null" }
            if boolValue != nil { return "a boolean" }
            if isPlainScalar && Int(text) != nil { return "a number" }
            return "a string"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        }
    }

    /// The items of a sequence (nothing for another node).
    var items: Children { Children(doc: doc, first: index + 1, end: isSequence ? Int(raw.end) : index + 1, step: 1) }

    /// The entries of a mapping (nothing for another node).
    var entries: Entries { Entries(children: Children(doc: doc, first: index + 1, end: isMapping ? Int(raw.end) : index + 1, step: 2)) }

    struct Children: Sequence, IteratorProtocol {
        unowned(unsafe) let doc: YAMLDocument
        var position: Int
        let end: Int
        let step: Int

        init(doc: YAMLDocument, first: Int, end: Int, step: Int) {
            self.doc = doc
            self.position = first
            self.end = end
            self.step = step
        }

        mutating func next() -> YAMLNode? {
            guard position < end else { return nil }
            let node = YAMLNode(doc: doc, index: position)
            // A mapping's children alternate key, value: skip the value's subtree too.
            position = step == 1 ? Int(doc.nodes[position].end) : Int(doc.nodes[position + 1].end)
            return node
        }
    }

    struct Entries: Sequence, IteratorProtocol {
        var children: Children
        mutating func next() -> (key: YAMLNode, value: YAMLNode)? {
            guard let key = children.next() else { return nil }
            return (key, YAMLNode(doc: key.doc, index: key.index + 1))
        }
    }
}

/// The keys a mapping may have, with their bytes ready for comparing against scalars (made once, kept in a
/// static; the buffers live as long as the program).
struct KeySet: @unchecked Sendable {
    let names: [String]
    let bytes: [UnsafeBufferPointer<UInt8>]

    init(_ names: [String]) {
        self.names = names
        bytes = names.map { name in
            let utf8 = Array(name.utf8)
            let p = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(1, utf8.count))
            _ = p.initialize(from: utf8)
            return UnsafeBufferPointer(rebasing: p[0..<utf8.count])
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
    ///
    /// Block-style YAML as policies are written goes through ``FastYAML`` (a byte scanner that builds the very
    /// same document); anything it does not accept, and every error, goes to libyaml, the reference parser.
    /// `forceLibyaml` skips the fast path (for the differential test and the benchmark).
    static func parse(_ bytes: [UInt8], file: String, forceLibyaml: Bool = false) throws(Diagnostic) -> YAMLDocument {
        let start = SourceLocation(file: file, line: 1, column: 1)
        if bytes.count > maxBytes {
            throw Diagnostic(.error, start, "the file is \(bytes.count) bytes; a policy may have at most \(maxBytes) bytes")
        }
        if bytes.isEmpty {
            throw Diagnostic(.error, start, "the file is empty; a policy starts with `version: 1`")
        }
        if !forceLibyaml, let document = bytes.withUnsafeBufferPointer({ FastYAML.parse($0, file: file) }) {
            return document
        }
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        defer { parser.deallocate() }
        guard yaml_parser_initialize(parser) == 1 else {
            throw Diagnostic(.error, start, "cannot initialise the YAML parser (out of memory)")
        }
        defer { yaml_parser_delete(parser) }
        return try bytes.withUnsafeBufferPointer { (buffer) throws(Diagnostic) -> YAMLDocument in
            // The input is handed over as one buffer (no read callback, no copy).
            yaml_parser_set_input_string(parser, buffer.baseAddress, buffer.count)
            yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING)
            return try build(parser, file: file, sizeHint: buffer.count)
        }
    }

    /// A growable buffer of trivial values, owned by hand: `take()` hands it over, `free()` frees what was not
    /// handed over.
    struct Buffer<T> {
        private(set) var base: UnsafeMutablePointer<T>
        private(set) var count = 0
        private var capacity: Int
        private var owned = true

        init(capacity: Int) {
            self.capacity = capacity
            base = UnsafeMutableRawPointer.allocate(byteCount: capacity * MemoryLayout<T>.stride, alignment: 16)
                .bindMemory(to: T.self, capacity: capacity)
        }

        private init(base: UnsafeMutablePointer<T>, capacity: Int) {
            self.base = base
            self.capacity = capacity
        }

        /// Starts in `block` when it is large enough for `capacity` elements (else frees it and allocates).
        init(capacity: Int, reusing block: Spare.Block?) {
            if let block, block.bytes >= capacity * MemoryLayout<T>.stride {
                let fits = block.bytes / MemoryLayout<T>.stride
                self.init(base: block.base.bindMemory(to: T.self, capacity: fits), capacity: fits)
            } else {
                block?.base.deallocate()
                self.init(capacity: capacity)
            }
        }

        @inline(__always)
        private mutating func reserve(_ more: Int) {
            if count + more > capacity { grow(more) }
        }

        @inline(never)
        private mutating func grow(_ more: Int) {
            var size = capacity * 2
            while size < count + more { size *= 2 }
            let bigger = UnsafeMutableRawPointer.allocate(byteCount: size * MemoryLayout<T>.stride, alignment: 16)
                .bindMemory(to: T.self, capacity: size)
            bigger.moveInitialize(from: base, count: count)
            UnsafeMutableRawPointer(base).deallocate()
            base = bigger
            capacity = size
        }

        @inline(__always)
        mutating func append(_ value: T) {
            reserve(1)
            (base + count).initialize(to: value)
            count += 1
        }

        mutating func removeLast() { count -= 1 }

        @inline(__always)
        mutating func append(_ values: UnsafePointer<T>, count n: Int) {
            reserve(n)
            (base + count).initialize(from: values, count: n)
            count += n
        }

        subscript(i: Int) -> T {
            @inline(__always) get { base[i] }
            set { base[i] = newValue }
        }

        mutating func take() -> (UnsafeMutableBufferPointer<T>, capacity: Int) {
            owned = false
            return (UnsafeMutableBufferPointer(start: base, count: count), capacity)
        }

        func free() { if owned { UnsafeMutableRawPointer(base).deallocate() } }
    }

    /// One spare pair of node and text buffers, kept from the last document for the next parse: a large policy
    /// needs about 1 MB of them, and allocating and freeing that much each load costs the allocator a
    /// consolidation of its free lists (and fresh pages) every time.
    enum Spare {
        struct Block: @unchecked Sendable {
            let base: UnsafeMutableRawPointer
            let bytes: Int
            init(_ base: UnsafeMutableRawPointer, _ bytes: Int) { self.base = base; self.bytes = bytes }
        }
        static let slot = Mutex<(nodes: Block, text: Block)?>(nil)

        static func take() -> (nodes: Block, text: Block)? {
            slot.withLock { s in
                let taken = s
                s = nil
                return taken
            }
        }

        /// Larger buffers (from a policy of megabytes) are freed rather than kept for the life of the process.
        static let maxKept = 4 << 20

        static func give(nodes: Block, text: Block) {
            if nodes.bytes + text.bytes > maxKept {
                nodes.base.deallocate()
                text.base.deallocate()
                return
            }
            let previous: (nodes: Block, text: Block)? = slot.withLock { s in
                let old = s
                s = (nodes, text)
                return old
            }
            if let previous { previous.nodes.base.deallocate(); previous.text.base.deallocate() }
        }
    }

    /// An open collection: where its node is, and how many children it has so far.
    private struct Frame {
        var index: Int
        var isMapping: Bool
        var children: Int
    }

    /// Builds the flat tree from libyaml's events with an explicit stack (no recursion: deep input cannot
    /// exhaust the thread's stack).
    private static func build(_ parser: UnsafeMutablePointer<yaml_parser_t>, file: String, sizeHint: Int) throws(Diagnostic) -> YAMLDocument {
        var stack: [Frame] = []
        stack.reserveCapacity(8)
        // Nodes and scalar text go into plain buffers that grow by doubling and are handed to the document
        // as they are (no per-append bookkeeping of an Array, no copy at the end).
        let spare = Spare.take()
        var nodes = Buffer<YAMLDocument.Node>(capacity: max(64, sizeHint / 8), reusing: spare?.nodes)
        var text = Buffer<UInt8>(capacity: max(64, sizeHint), reusing: spare?.text)
        defer { nodes.free(); text.free() }
        var documents = 0
        var finished = false
        var event = yaml_event_t()

        func fail(_ line: Int32, _ column: Int32, _ message: String) -> Diagnostic {
            Diagnostic(.error, SourceLocation(file: file, line: Int(line), column: Int(column)), message)
        }

        /// True when the innermost collection is a mapping waiting for a key.
        func expectingKey() -> Bool {
            guard let last = stack.last else { return false }
            return last.isMapping && last.children % 2 == 0
        }

        /// A scalar key must not repeat in its mapping (a linear scan: mappings in a policy are small).
        func checkDuplicateKey(_ frame: Frame, _ key: Int) throws(Diagnostic) {
            let k = nodes[key]
            var i = frame.index + 1
            let t = text.base
            while i < key {
                let other = nodes[i]
                if other.count == k.count && (k.count == 0 || memcmp(t + Int(other.start), t + Int(k.start), Int(k.count)) == 0) {
                    let name = String(decoding: UnsafeBufferPointer(start: t + Int(k.start), count: Int(k.count)), as: UTF8.self)
                    throw fail(k.line, k.column, "duplicate key '\(name)' (first at line \(other.line), column \(other.column))")
                }
                i = Int(nodes[i + 1].end)
            }
        }

        while true {
            guard yaml_parser_parse(parser, &event) == 1 else {
                let p = parser.pointee
                let problem = p.problem.map { String(cString: $0) } ?? "malformed YAML"
                var message = "YAML syntax error: \(problem)"
                if let context = p.context.map({ String(cString: $0) }) {
                    message += " (\(context) at line \(p.context_mark.line + 1), column \(p.context_mark.column + 1))"
                }
                throw fail(Int32(truncatingIfNeeded: p.problem_mark.line + 1), Int32(truncatingIfNeeded: p.problem_mark.column + 1), message)
            }
            defer { yaml_event_delete(&event) }
            let line = Int32(truncatingIfNeeded: event.start_mark.line + 1)
            let column = Int32(truncatingIfNeeded: event.start_mark.column + 1)
            switch event.type {
            case YAML_STREAM_START_EVENT, YAML_NO_EVENT:
                continue
            case YAML_STREAM_END_EVENT:
                guard finished else { throw fail(line, column, "the file holds no YAML document; a policy starts with `version: 1`") }
                let document = YAMLDocument(file: file, nodes: nodes.take(), text: text.take())
                return document
            case YAML_DOCUMENT_START_EVENT:
                documents += 1
                if documents > 1 { throw fail(line, column, "a policy file holds one YAML document; found a second one here (`---`)") }
            case YAML_DOCUMENT_END_EVENT:
                continue
            case YAML_ALIAS_EVENT:
                throw fail(line, column, "YAML aliases (*name) are not allowed in a policy: write the value out")
            case YAML_SCALAR_EVENT:
                let s = event.data.scalar
                if s.anchor != nil { throw fail(line, column, "YAML anchors (&name) are not allowed in a policy") }
                if s.tag != nil { throw fail(line, column, "YAML tags (!name) are not allowed in a policy") }
                let index = nodes.count
                let start = text.count
                if let value = s.value, s.length > 0 { text.append(value, count: Int(s.length)) }
                nodes.append(YAMLDocument.Node(kind: .scalar, plain: s.style == YAML_PLAIN_SCALAR_STYLE, line: line, column: column,
                                               start: Int32(start), count: Int32(text.count - start), end: Int32(index + 1)))
                if stack.isEmpty {
                    finished = true
                } else {
                    let top = stack.count - 1
                    if expectingKey() { try checkDuplicateKey(stack[top], index) }
                    stack[top].children += 1
                }
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                let isMapping = event.type == YAML_MAPPING_START_EVENT
                let anchor = isMapping ? event.data.mapping_start.anchor : event.data.sequence_start.anchor
                let tag = isMapping ? event.data.mapping_start.tag : event.data.sequence_start.tag
                if anchor != nil { throw fail(line, column, "YAML anchors (&name) are not allowed in a policy") }
                if tag != nil { throw fail(line, column, "YAML tags (!name) are not allowed in a policy") }
                if expectingKey() { throw fail(line, column, "a mapping key must be a plain word, not \(isMapping ? "a mapping" : "a list")") }
                if stack.count >= maxDepth { throw fail(line, column, "nesting deeper than \(maxDepth) levels") }
                if let top = stack.indices.last { stack[top].children += 1 }
                stack.append(Frame(index: nodes.count, isMapping: isMapping, children: 0))
                nodes.append(YAMLDocument.Node(kind: isMapping ? .mapping : .sequence, plain: false, line: line, column: column,
                                               start: 0, count: 0, end: 0))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                let isMapping = event.type == YAML_MAPPING_END_EVENT
                guard let frame = stack.popLast(), frame.isMapping == isMapping, !isMapping || frame.children % 2 == 0 else {
                    throw fail(line, column, "malformed YAML")
                }
                nodes[frame.index].count = Int32(isMapping ? frame.children / 2 : frame.children)
                nodes[frame.index].end = Int32(nodes.count)
                if stack.isEmpty { finished = true }
            default:
                throw fail(line, column, "malformed YAML")
            }
        }
    }
}
