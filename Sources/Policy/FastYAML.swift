#if canImport(Glibc)
import Glibc
#endif

/// A fast path for the YAML that policy files are written in: one pass of a byte scanner over the file that
/// builds the very same ``YAMLDocument`` libyaml's events would (same nodes, kinds, `plain` flags, lines and
/// columns, scalar bytes), with no allocation per node.
///
/// Why it exists: on a 1,000-rule policy (267 KB) libyaml's event parser alone costs about 54 M instructions
/// (≈10 ms), most of it a malloc/free per token and event and its character-by-character buffer decoding;
/// libfyaml costs the same. That is the whole 10 ms load budget before any validation.
///
/// It accepts only a subset, and answers nil on anything outside it or in doubt; the caller then parses with
/// libyaml, which stays the reference parser and produces every diagnostic. The subset:
/// - block mappings and block sequences (`- `), including the compact forms (`- key: v`, `- - x`) and a
///   sequence written at its key's indentation;
/// - single-line plain scalars, single-line single- and double-quoted scalars (all of YAML's escapes);
/// - flow sequences and flow mappings of scalars (nested), also over several lines, without empty entries;
/// - comments, blank lines, one optional leading `---`.
/// It returns nil on tabs, CR, control characters, a BOM, NEL/LS/PS, invalid UTF-8, anchors, aliases, tags,
/// `|`/`>` block scalars, `?` and `:` at a scalar's start, multi-line scalars (plain continuation lines
/// too), a value on the line after its key, directives, `...`, a second document, duplicate keys, keys longer
/// than 1,000 bytes, nesting deeper than 60, and any syntax error (which libyaml then reports).
///
/// `Tests/PolicyTests/FastYAMLTests.swift` compares it with libyaml on every shipped policy, the fuzz corpus,
/// mutated policies and generated documents: it must answer nil or the identical document.
enum FastYAML {
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, file: String) -> YAMLDocument? {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return nil }
        guard let allASCII = checkCharacters(base, bytes.count) else { return nil }
        var scanner = Scanner(p: base, n: bytes.count, allASCII: allASCII)
        defer { scanner.release() }
        guard scanner.run() else { return nil }
        return YAMLDocument(file: file, nodes: scanner.nodes.take(), text: scanner.text.take())
    }

    /// One pass over the bytes: nil when any byte is outside what the scanner handles (control characters,
    /// tab, CR, invalid UTF-8, a BOM, C1 controls including NEL, LS, PS, U+FFFE/U+FFFF); else whether all of
    /// it is ASCII (then a column is a byte offset).
    static func checkCharacters(_ p: UnsafePointer<UInt8>, _ n: Int) -> Bool? {
        var i = 0
        var ascii = true
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080, lows: UInt64 = 0x7f7f_7f7f_7f7f_7f7f
        while i < n {
            // Eight bytes at a time while they are printable ASCII or line breaks (exact per-byte tests, no
            // borrow between bytes).
            if i + 8 <= n {
                let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
                let below20 = ~((w | highs) &- ones &* 0x20) & ~w & highs
                let x = w ^ (ones &* 0x0a)
                let isNewline = ~(((x & lows) &+ lows) | x | lows)
                let y = w ^ (ones &* 0x7f)
                let isDelete = ~(((y & lows) &+ lows) | y | lows)
                if (w & highs) | (below20 & ~isNewline) | isDelete == 0 { i += 8; continue }
            }
            let b = p[i]
            if b >= 0x20 && b < 0x7f || b == 0x0a { i += 1; continue }
            if b < 0x80 { return nil }
            ascii = false
            if b < 0xc2 || b > 0xf4 { return nil }
            if b < 0xe0 {
                guard i + 1 < n, p[i + 1] & 0xc0 == 0x80, !(b == 0xc2 && p[i + 1] < 0xa0) else { return nil }
                i += 2
            } else if b < 0xf0 {
                guard i + 2 < n, p[i + 1] & 0xc0 == 0x80, p[i + 2] & 0xc0 == 0x80 else { return nil }
                let b1 = p[i + 1], b2 = p[i + 2]
                if b == 0xe0 && b1 < 0xa0 { return nil }                  // overlong
                if b == 0xed && b1 >= 0xa0 { return nil }                 // surrogates
                if b == 0xe2 && b1 == 0x80 && (b2 == 0xa8 || b2 == 0xa9) { return nil }   // LS, PS
                if b == 0xef && b1 == 0xbb && b2 == 0xbf { return nil }   // BOM
                if b == 0xef && b1 == 0xbf && b2 >= 0xbe { return nil }   // U+FFFE, U+FFFF
                i += 3
            } else {
                guard i + 3 < n, p[i + 1] & 0xc0 == 0x80, p[i + 2] & 0xc0 == 0x80, p[i + 3] & 0xc0 == 0x80 else { return nil }
                if b == 0xf0 && p[i + 1] < 0x90 { return nil }
                if b == 0xf4 && p[i + 1] >= 0x90 { return nil }
                i += 4
            }
        }
        return ascii
    }
}

private let space = UInt8(ascii: " "), newline = UInt8(ascii: "\n"), hash = UInt8(ascii: "#"), colon = UInt8(ascii: ":"),
            dash = UInt8(ascii: "-"), comma = UInt8(ascii: ","), squote = UInt8(ascii: "'"), dquote = UInt8(ascii: "\""),
            backslash = UInt8(ascii: "\\"), lbracket = UInt8(ascii: "["), rbracket = UInt8(ascii: "]"),
            lbrace = UInt8(ascii: "{"), rbrace = UInt8(ascii: "}")

/// Byte classes for the scanning loops: one table look-up per byte instead of a chain of comparisons.
private enum ByteClass {
    /// Ends a run of a block plain scalar's bytes: space, line break, `:`.
    static let blockStop: UInt8 = 1
    /// Ends a run in a flow plain scalar: those and `,[]{}`.
    static let flowStop: UInt8 = 2
    /// Ends a run in a double-quoted scalar: `"`, `\`, line break.
    static let doubleStop: UInt8 = 4
    /// Ends a run in a single-quoted scalar: `'`, line break.
    static let singleStop: UInt8 = 8

    /// Written once, read only.
    nonisolated(unsafe) static let table: UnsafePointer<UInt8> = {
        let t = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
        t.initialize(repeating: 0, count: 256)
        for b in [space, newline, colon] { t[Int(b)] |= blockStop | flowStop }
        for b in [comma, lbracket, rbracket, lbrace, rbrace] { t[Int(b)] |= flowStop }
        for b in [dquote, backslash, newline] { t[Int(b)] |= doubleStop }
        for b in [squote, newline] { t[Int(b)] |= singleStop }
        return UnsafePointer(t)
    }()
}

private struct Scanner {
    let p: UnsafePointer<UInt8>
    let n: Int
    let allASCII: Bool
    var i = 0
    var line: Int32 = 1
    var lineStart = 0
    var nodes: YAMLReader.Buffer<YAMLDocument.Node>
    var text: YAMLReader.Buffer<UInt8>
    var stack: YAMLReader.Buffer<Frame>
    var rootStarted = false
    /// A key whose value, or a `-` whose item, is not on its line: where the empty scalar would be, if the
    /// next line does not open a nested collection.
    var pendingLine: Int32 = 0
    var pendingColumn: Int32 = 0
    var pendingKey = false
    var pending = false

    static let maxDepth = 60
    static let maxKey = 1000

    struct Frame {
        var index: Int
        var isMapping: Bool
        /// Column (0-based) of a block collection's items or keys; -1 for a flow collection.
        var indent: Int
        /// A sequence at its parent key's indentation (`key:` then `- x` at the same column).
        var indentless: Bool
        var children: Int
    }

    init(p: UnsafePointer<UInt8>, n: Int, allASCII: Bool) {
        self.p = p
        self.n = n
        self.allASCII = allASCII
        let spare = YAMLReader.Spare.take()
        nodes = .init(capacity: max(64, n / 8), reusing: spare?.nodes)
        text = .init(capacity: max(64, n), reusing: spare?.text)
        stack = .init(capacity: 16)
    }

    func release() {
        nodes.free()
        text.free()
        stack.free()
    }

    // MARK: bytes

    @inline(__always) func at(_ j: Int) -> UInt8 { j < n ? p[j] : newline }
    /// Space, line break or end of input (tabs and CR never get this far).
    @inline(__always) func blankz(_ j: Int) -> Bool { j >= n || p[j] == space || p[j] == newline }
    @inline(__always) func isBlockEntry(_ j: Int) -> Bool { p[j] == dash && blankz(j + 1) }
    @inline(__always) func isFlowIndicator(_ b: UInt8) -> Bool { b == comma || b == lbracket || b == rbracket || b == lbrace || b == rbrace }

    /// 1-based column of byte `j` on the current line, in characters as libyaml counts them.
    @inline(__always)
    func column(_ j: Int) -> Int32 {
        if allASCII { return Int32(truncatingIfNeeded: j - lineStart + 1) }
        var c: Int32 = 1
        var k = lineStart
        while k < j { if p[k] & 0xc0 != 0x80 { c += 1 }; k += 1 }
        return c
    }

    @inline(__always)
    mutating func skipSpaces() { while i < n && p[i] == space { i += 1 } }

    /// Skips to the line break (not past it).
    mutating func skipComment() {
        if let found = memchr(p + i, Int32(newline), n - i) {
            i = UnsafePointer<UInt8>(found.assumingMemoryBound(to: UInt8.self)) - p
        } else {
            i = n
        }
    }

    /// The rest of a line after a node: spaces, then nothing or a comment.
    mutating func restOfLine() -> Bool {
        skipSpaces()
        if i >= n || p[i] == newline { return true }
        if p[i] == hash && p[i - 1] == space { skipComment(); return true }
        return false
    }

    // MARK: nodes

    @inline(__always)
    mutating func addChild() {
        if stack.count > 0 { stack[stack.count - 1].children += 1 }
    }

    @inline(__always)
    mutating func appendScalar(_ s: Scalar) {
        addChild()
        let index = nodes.count
        nodes.append(YAMLDocument.Node(kind: .scalar, plain: s.plain, line: line, column: column(s.position),
                                       start: Int32(truncatingIfNeeded: s.textStart), count: Int32(truncatingIfNeeded: s.textCount),
                                       end: Int32(truncatingIfNeeded: index + 1)))
    }

    mutating func appendEmpty(line: Int32, column: Int32) {
        addChild()
        let index = nodes.count
        nodes.append(YAMLDocument.Node(kind: .scalar, plain: true, line: line, column: column,
                                       start: Int32(truncatingIfNeeded: text.count), count: 0, end: Int32(truncatingIfNeeded: index + 1)))
    }

    mutating func push(mapping: Bool, at j: Int, indent: Int, indentless: Bool = false) -> Bool {
        if stack.count >= Self.maxDepth { return false }
        addChild()
        stack.append(Frame(index: nodes.count, isMapping: mapping, indent: indent, indentless: indentless, children: 0))
        nodes.append(YAMLDocument.Node(kind: mapping ? .mapping : .sequence, plain: false, line: line, column: column(j),
                                       start: 0, count: 0, end: 0))
        return true
    }

    mutating func pop() {
        let frame = stack[stack.count - 1]
        stack.removeLast()
        nodes[frame.index].count = Int32(truncatingIfNeeded: frame.isMapping ? frame.children / 2 : frame.children)
        nodes[frame.index].end = Int32(truncatingIfNeeded: nodes.count)
    }

    /// A key is appended as a scalar node after this check: false when the mapping on top already has it.
    func isDuplicateKey(_ s: Scalar) -> Bool {
        let frame = stack[stack.count - 1]
        var k = frame.index + 1
        let t = text.base
        while k < nodes.count {
            let other = nodes[k]
            if Int(other.count) == s.textCount && (s.textCount == 0 || memcmp(t + Int(other.start), t + s.textStart, s.textCount) == 0) {
                return true
            }
            k = Int(nodes[k + 1].end)
        }
        return false
    }

    // MARK: scalars

    struct Scalar {
        var position: Int
        var plain: Bool
        var textStart: Int
        var textCount: Int
    }

    /// Scans a single-line scalar at `i` (its text goes into `text`; `i` ends just after it). Nil when it is
    /// not one the fast path handles.
    mutating func scalar(flow: Bool) -> Scalar? {
        let start = i
        let c = p[i]
        let textStart = text.count
        if c == squote || c == dquote {
            guard c == squote ? singleQuoted() : doubleQuoted() else { return nil }
            return Scalar(position: start, plain: false, textStart: textStart, textCount: text.count - textStart)
        }
        switch c {
        case space, newline, comma, lbracket, rbracket, lbrace, rbrace, hash, UInt8(ascii: "&"), UInt8(ascii: "*"),
             UInt8(ascii: "!"), UInt8(ascii: "|"), UInt8(ascii: ">"), UInt8(ascii: "%"), UInt8(ascii: "@"), UInt8(ascii: "`"),
             UInt8(ascii: "?"), colon:
            return nil
        case dash where blankz(i + 1):
            return nil
        default: break
        }
        var j = i
        var end = i
        let table = ByteClass.table
        let stop = flow ? ByteClass.flowStop : ByteClass.blockStop
        scan: while true {
            while j < n {
                let b = p[j]
                if table[Int(b)] & stop == 0 { j += 1; continue }
                if b == space || b == newline { break }
                if b == colon {
                    let next = at(j + 1)
                    if next == space || next == newline { end = j; break scan }
                    if flow && (isFlowIndicator(next) || next == UInt8(ascii: "?")) { return nil }
                }
                if flow && isFlowIndicator(b) { end = j; break scan }
                j += 1
            }
            end = j
            if j >= n || p[j] == newline { break }
            var k = j
            while k < n && p[k] == space { k += 1 }
            if k >= n { break }
            let b = p[k]
            if b == newline || b == hash { break }
            if b == colon && blankz(k + 1) { break }
            if flow && isFlowIndicator(b) { break }
            j = k
        }
        i = end
        let count = end - start
        text.append(p + start, count: count)
        return Scalar(position: start, plain: true, textStart: textStart, textCount: count)
    }

    mutating func singleQuoted() -> Bool {
        let table = ByteClass.table
        var j = i + 1
        while true {
            var k = j
            while k < n && table[Int(p[k])] & ByteClass.singleStop == 0 { k += 1 }
            if k >= n || p[k] == newline { return false }
            if k > j { text.append(p + j, count: k - j) }
            if k + 1 < n && p[k + 1] == squote {
                text.append(squote)
                j = k + 2
            } else {
                i = k + 1
                return true
            }
        }
    }

    mutating func doubleQuoted() -> Bool {
        let table = ByteClass.table
        var j = i + 1
        while true {
            var k = j
            while k < n && table[Int(p[k])] & ByteClass.doubleStop == 0 { k += 1 }
            if k >= n || p[k] == newline { return false }
            if k > j { text.append(p + j, count: k - j) }
            if p[k] == dquote { i = k + 1; return true }
            // An escape.
            guard k + 1 < n else { return false }
            var length = 0
            switch p[k + 1] {
            case UInt8(ascii: "0"): text.append(0)
            case UInt8(ascii: "a"): text.append(7)
            case UInt8(ascii: "b"): text.append(8)
            case UInt8(ascii: "t"): text.append(9)
            case UInt8(ascii: "n"): text.append(10)
            case UInt8(ascii: "v"): text.append(11)
            case UInt8(ascii: "f"): text.append(12)
            case UInt8(ascii: "r"): text.append(13)
            case UInt8(ascii: "e"): text.append(0x1b)
            case space: text.append(space)
            case dquote: text.append(dquote)
            case UInt8(ascii: "/"): text.append(UInt8(ascii: "/"))
            case backslash: text.append(backslash)
            case UInt8(ascii: "N"): appendUTF8(0x85)
            case UInt8(ascii: "_"): appendUTF8(0xa0)
            case UInt8(ascii: "L"): appendUTF8(0x2028)
            case UInt8(ascii: "P"): appendUTF8(0x2029)
            case UInt8(ascii: "x"): length = 2
            case UInt8(ascii: "u"): length = 4
            case UInt8(ascii: "U"): length = 8
            default: return false
            }
            j = k + 2
            if length > 0 {
                guard j + length <= n else { return false }
                var value: UInt32 = 0
                for d in 0..<length {
                    let h = p[j + d]
                    let digit: UInt8
                    switch h {
                    case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = h - UInt8(ascii: "0")
                    case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = h - UInt8(ascii: "a") + 10
                    case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = h - UInt8(ascii: "A") + 10
                    default: return false
                    }
                    value = value << 4 | UInt32(digit)
                }
                if (value >= 0xd800 && value <= 0xdfff) || value > 0x10ffff { return false }
                appendUTF8(value)
                j += length
            }
        }
    }

    mutating func appendUTF8(_ v: UInt32) {
        if v <= 0x7f {
            text.append(UInt8(v))
        } else if v <= 0x7ff {
            text.append(UInt8(0xc0 + (v >> 6))); text.append(UInt8(0x80 + (v & 0x3f)))
        } else if v <= 0xffff {
            text.append(UInt8(0xe0 + (v >> 12))); text.append(UInt8(0x80 + ((v >> 6) & 0x3f))); text.append(UInt8(0x80 + (v & 0x3f)))
        } else {
            text.append(UInt8(0xf0 + (v >> 18))); text.append(UInt8(0x80 + ((v >> 12) & 0x3f)))
            text.append(UInt8(0x80 + ((v >> 6) & 0x3f))); text.append(UInt8(0x80 + (v & 0x3f)))
        }
    }

    // MARK: flow collections

    /// Whitespace inside a flow collection: spaces, and line breaks with comments and blank lines between
    /// entries. False at the end of the input, or when a continued line is not indented past the block
    /// collection around (libyaml is laxer there; this path leaves such files to it).
    mutating func flowSpace() -> Bool {
        while true {
            skipSpaces()
            if i >= n { return false }
            if p[i] == hash {
                guard p[i - 1] == space || i == lineStart else { return false }
                skipComment()
                if i >= n { return false }
            }
            if p[i] != newline { return true }
            i += 1
            line += 1
            lineStart = i
            skipSpaces()
            if i < n && p[i] != newline && p[i] != hash {
                var limit = 0
                var k = stack.count - 1
                while k >= 0 { if stack[k].indent >= 0 { limit = stack[k].indent; break }; k -= 1 }
                if i - lineStart <= limit { return false }
            }
        }
    }

    /// A flow sequence or mapping of scalars and flow collections, which may span lines between its entries
    /// (a key, its `: ` and the start of its value stay on one line).
    mutating func flowCollection() -> Bool {
        let isMapping = p[i] == lbrace
        let close = isMapping ? rbrace : rbracket
        guard push(mapping: isMapping, at: i, indent: -1) else { return false }
        i += 1
        guard flowSpace() else { return false }
        if p[i] == close { i += 1; pop(); return true }
        while true {
            if isMapping {
                let keyStart = i
                guard p[i] != lbracket && p[i] != lbrace, let key = scalar(flow: true) else { return false }
                if isDuplicateKey(key) { return false }
                appendScalar(key)
                skipSpaces()
                guard i + 1 < n, p[i] == colon, p[i + 1] == space, i - keyStart <= Self.maxKey else { return false }
                i += 2
                skipSpaces()
                guard i < n, p[i] != comma, p[i] != close, p[i] != newline, p[i] != hash else { return false }
            }
            if p[i] == lbracket || p[i] == lbrace {
                guard flowCollection() else { return false }
            } else {
                guard let item = scalar(flow: true) else { return false }
                appendScalar(item)
            }
            guard flowSpace() else { return false }
            if p[i] == comma {
                i += 1
                guard flowSpace(), p[i] != close, p[i] != comma else { return false }
                continue
            }
            if p[i] == close { i += 1; pop(); return true }
            return false
        }
    }

    // MARK: block structure

    /// A scalar or flow collection after `key: ` on the key's line.
    mutating func value() -> Bool {
        let c = p[i]
        if c == lbracket || c == lbrace { return flowCollection() && restOfLine() }
        guard let s = scalar(flow: false) else { return false }
        appendScalar(s)
        return restOfLine()
    }

    /// Nothing but a comment after a `:` or `-` on its line: the value is an empty node or the block that follows,
    /// decided at the next line; remember where it starts. False when something follows on the line.
    mutating func pendIfLineEnds(key: Bool, column: Int32) -> Bool {
        guard i >= n || p[i] == newline || p[i] == hash else { return false }
        if i < n && p[i] == hash { skipComment() }
        pending = true; pendingKey = key; pendingLine = line; pendingColumn = column
        return true
    }

    /// At a key's `:`; the key node is appended.
    mutating func afterColon() -> Bool {
        let colonColumn = column(i)
        i += 1
        skipSpaces()
        if pendIfLineEnds(key: true, column: colonColumn + 1) { return true }
        return value()
    }

    /// A key scanned at `keyStart`: `i` must be at its `:`. Checks it, appends it and reads the value.
    mutating func key(_ s: Scalar, _ keyStart: Int) -> Bool {
        skipSpaces()
        guard i < n, p[i] == colon, blankz(i + 1), i - keyStart <= Self.maxKey else { return false }
        if isDuplicateKey(s) { return false }
        appendScalar(s)
        return afterColon()
    }

    /// At a `-` of the sequence on top.
    mutating func entry() -> Bool {
        let dashColumn = column(i)
        i += 1
        skipSpaces()
        if pendIfLineEnds(key: false, column: dashColumn + 1) { return true }
        // Something on the dash's line: a nested sequence, a compact mapping, a flow collection or a scalar.
        let c = p[i]
        if isBlockEntry(i) {
            guard push(mapping: false, at: i, indent: i - lineStart) else { return false }
            return entry()
        }
        if c == lbracket || c == lbrace { return flowCollection() && restOfLine() }
        let start = i
        guard let s = scalar(flow: false) else { return false }
        let after = i
        skipSpaces()
        if i < n && p[i] == colon && blankz(i + 1) {
            guard push(mapping: true, at: start, indent: start - lineStart) else { return false }
            i = after
            return key(s, start)
        }
        i = after
        appendScalar(s)
        return restOfLine()
    }

    /// A block collection opened on a line of its own (the root, or the value of a key or `-` above it).
    mutating func blockNode(indent: Int) -> Bool {
        if isBlockEntry(i) {
            guard push(mapping: false, at: i, indent: indent) else { return false }
            return entry()
        }
        let start = i
        guard p[i] != lbracket && p[i] != lbrace, let s = scalar(flow: false) else { return false }
        let after = i
        skipSpaces()
        guard i < n, p[i] == colon, blankz(i + 1) else { return false }
        guard push(mapping: true, at: start, indent: indent) else { return false }
        i = after
        return key(s, start)
    }

    /// A line with content at `i`, indented by `indent` spaces.
    mutating func contentLine(indent: Int) -> Bool {
        if pending {
            let top = stack[stack.count - 1]
            if indent > top.indent {
                pending = false
                return blockNode(indent: indent)
            }
            if pendingKey && indent == top.indent && isBlockEntry(i) {
                pending = false
                guard push(mapping: false, at: i, indent: indent, indentless: true) else { return false }
                return entry()
            }
            appendEmpty(line: pendingLine, column: pendingColumn)
            pending = false
        }
        if stack.count == 0 {
            if rootStarted { return false }
            rootStarted = true
            return blockNode(indent: indent)
        }
        while stack.count > 0 && stack[stack.count - 1].indent > indent { pop() }
        if stack.count == 0 { return false }
        var top = stack[stack.count - 1]
        if top.indentless && top.indent == indent && !isBlockEntry(i) {
            pop()
            top = stack[stack.count - 1]
        }
        guard top.indent == indent else { return false }
        if !top.isMapping {
            guard isBlockEntry(i) else { return false }
            return entry()
        }
        if isBlockEntry(i) { return false }
        let start = i
        guard p[i] != lbracket && p[i] != lbrace, let s = scalar(flow: false) else { return false }
        return key(s, start)
    }

    mutating func run() -> Bool {
        var sawDocumentStart = false
        while i < n {
            lineStart = i
            var j = i
            while j < n && p[j] == space { j += 1 }
            if j >= n { break }
            let c = p[j]
            if c == newline { i = j + 1; line += 1; continue }
            if c == hash {
                i = j
                skipComment()
            } else {
                if j == i && (c == dash || c == UInt8(ascii: ".")) && at(j + 1) == c && at(j + 2) == c {
                    // `---` or `...` (or a scalar starting so, which this path leaves to libyaml).
                    guard c == dash, blankz(j + 3), !sawDocumentStart, !rootStarted else { return false }
                    sawDocumentStart = true
                    i = j + 3
                    guard restOfLine() else { return false }
                } else {
                    i = j
                    guard contentLine(indent: j - lineStart) else { return false }
                    // Every handler stops at the line break (or the end).
                    guard i >= n || p[i] == newline else { return false }
                }
            }
            if i < n { i += 1; line += 1 }
        }
        if pending { appendEmpty(line: pendingLine, column: pendingColumn); pending = false }
        while stack.count > 0 { pop() }
        return rootStarted && nodes.count > 0
    }
}
