namespace Snapshot.Nbd;

/// <summary>
/// Constants of the NBD protocol (NetworkBlockDevice/nbd <c>doc/proto.md</c>), fixed newstyle negotiation with
/// structured replies. Every number on the wire is big-endian.
/// </summary>
/// <remarks>
/// Wire formats this server reads and writes (sizes in bytes):
/// <code>
/// greeting (server)        8 "NBDMAGIC" | 8 "IHAVEOPT" | 2 handshake flags
/// client flags (client)    4
/// option (client)          8 "IHAVEOPT" | 4 option | 4 length | length bytes of data
/// option reply (server)    8 0x3e889045565a9 | 4 option | 4 reply type | 4 length | length bytes of data
/// EXPORT_NAME reply        8 size | 2 transmission flags | 124 zeros (left out with NO_ZEROES)
/// request (client)         4 0x25609513 | 2 command flags | 2 type | 8 handle | 8 offset | 4 length | (WRITE: length bytes)
/// simple reply (server)    4 0x67446698 | 4 error | 8 handle | (READ without error: the data)
/// structured chunk         4 0x668e33ef | 2 flags | 2 type | 8 handle | 4 length | length bytes of payload
/// </code>
/// </remarks>
internal static class NbdProtocol
{
    /// <summary>"NBDMAGIC": the first 8 bytes the server sends.</summary>
    public const ulong InitMagic = 0x4e42444d41474943;

    /// <summary>"IHAVEOPT": after the init magic, and at the start of every option the client sends.</summary>
    public const ulong OptionMagic = 0x49484156454F5054;

    /// <summary>Magic of every option reply.</summary>
    public const ulong OptionReplyMagic = 0x3e889045565a9;

    /// <summary>Magic of every transmission request.</summary>
    public const uint RequestMagic = 0x25609513;

    /// <summary>Magic of a simple reply.</summary>
    public const uint SimpleReplyMagic = 0x67446698;

    /// <summary>Magic of a structured reply chunk.</summary>
    public const uint StructuredReplyMagic = 0x668e33ef;

    /// <summary>Size of a request header.</summary>
    public const int RequestHeaderBytes = 28;

    /// <summary>Size of a simple reply header.</summary>
    public const int SimpleReplyBytes = 16;

    /// <summary>Size of a structured reply chunk header.</summary>
    public const int StructuredHeaderBytes = 20;

    /// <summary>Size of an option header (magic, option, length).</summary>
    public const int OptionHeaderBytes = 16;

    /// <summary>Size of an option reply header.</summary>
    public const int OptionReplyHeaderBytes = 20;

    /// <summary>Most bytes of option data the server accepts (names and queries are at most 4096 bytes each).</summary>
    public const int MaxOptionBytes = 64 * 1024;

    /// <summary>Most bytes in a string (export name, error message).</summary>
    public const int MaxStringBytes = 4096;

    // Handshake flags (server) and client flags.

    /// <summary>Handshake flag: the server speaks fixed newstyle.</summary>
    public const ushort FlagFixedNewstyle = 1 << 0;

    /// <summary>Handshake flag: the server leaves out the 124 zeros after EXPORT_NAME when the client asks.</summary>
    public const ushort FlagNoZeroes = 1 << 1;

    /// <summary>Client flag: fixed newstyle.</summary>
    public const uint ClientFixedNewstyle = 1 << 0;

    /// <summary>Client flag: no zeros after EXPORT_NAME.</summary>
    public const uint ClientNoZeroes = 1 << 1;

    // Transmission flags.

    /// <summary>Always set.</summary>
    public const ushort TxHasFlags = 1 << 0;

    /// <summary>The export is read-only.</summary>
    public const ushort TxReadOnly = 1 << 1;

    /// <summary>FLUSH is supported.</summary>
    public const ushort TxSendFlush = 1 << 2;

    /// <summary>The FUA command flag is supported.</summary>
    public const ushort TxSendFua = 1 << 3;

    /// <summary>TRIM is supported.</summary>
    public const ushort TxSendTrim = 1 << 5;

    /// <summary>WRITE_ZEROES (and NO_HOLE) is supported.</summary>
    public const ushort TxSendWriteZeroes = 1 << 6;

    /// <summary>READ accepts the DF flag (only with structured replies).</summary>
    public const ushort TxSendDf = 1 << 7;

    /// <summary>FLUSH and FUA cover every connection to the export.</summary>
    public const ushort TxCanMultiConn = 1 << 8;

    // Options.

    /// <summary>Choose an export and enter transmission (no error reply possible).</summary>
    public const uint OptExportName = 1;

    /// <summary>End the negotiation.</summary>
    public const uint OptAbort = 2;

    /// <summary>List the exports.</summary>
    public const uint OptList = 3;

    /// <summary>Start TLS (not supported).</summary>
    public const uint OptStartTls = 5;

    /// <summary>Describe an export.</summary>
    public const uint OptInfo = 6;

    /// <summary>Describe an export and enter transmission.</summary>
    public const uint OptGo = 7;

    /// <summary>Use structured replies.</summary>
    public const uint OptStructuredReply = 8;

    /// <summary>List metadata contexts.</summary>
    public const uint OptListMetaContext = 9;

    /// <summary>Select metadata contexts.</summary>
    public const uint OptSetMetaContext = 10;

    // Option reply types.

    /// <summary>The option succeeded (or a list ended).</summary>
    public const uint RepAck = 1;

    /// <summary>One export of a LIST.</summary>
    public const uint RepServer = 2;

    /// <summary>One piece of information about an export.</summary>
    public const uint RepInfo = 3;

    /// <summary>One metadata context.</summary>
    public const uint RepMetaContext = 4;

    /// <summary>Bit 31: an error reply.</summary>
    public const uint RepFlagError = 1u << 31;

    /// <summary>The option is not supported.</summary>
    public const uint RepErrUnsup = RepFlagError | 1;

    /// <summary>The option is refused by policy.</summary>
    public const uint RepErrPolicy = RepFlagError | 2;

    /// <summary>The option is malformed.</summary>
    public const uint RepErrInvalid = RepFlagError | 3;

    /// <summary>The export does not exist or is not available.</summary>
    public const uint RepErrUnknown = RepFlagError | 6;

    /// <summary>The server is shutting down.</summary>
    public const uint RepErrShutdown = RepFlagError | 7;

    /// <summary>The request or reply is too large.</summary>
    public const uint RepErrTooBig = RepFlagError | 9;

    // Information types (NBD_REP_INFO).

    /// <summary>Size and transmission flags.</summary>
    public const ushort InfoExport = 0;

    /// <summary>Canonical export name.</summary>
    public const ushort InfoName = 1;

    /// <summary>Human-readable description.</summary>
    public const ushort InfoDescription = 2;

    /// <summary>Minimum, preferred and maximum block sizes.</summary>
    public const ushort InfoBlockSize = 3;

    // Commands.

    /// <summary>Read.</summary>
    public const ushort CmdRead = 0;

    /// <summary>Write.</summary>
    public const ushort CmdWrite = 1;

    /// <summary>Disconnect (no reply).</summary>
    public const ushort CmdDisc = 2;

    /// <summary>Flush.</summary>
    public const ushort CmdFlush = 3;

    /// <summary>Trim (discard).</summary>
    public const ushort CmdTrim = 4;

    /// <summary>Cache (not advertised; answered with EINVAL).</summary>
    public const ushort CmdCache = 5;

    /// <summary>Write zeros.</summary>
    public const ushort CmdWriteZeroes = 6;

    /// <summary>Block status.</summary>
    public const ushort CmdBlockStatus = 7;

    // Command flags.

    /// <summary>Force unit access: reply only once the data is durable.</summary>
    public const ushort CmdFlagFua = 1 << 0;

    /// <summary>WRITE_ZEROES: do not punch a hole.</summary>
    public const ushort CmdFlagNoHole = 1 << 1;

    /// <summary>READ: at most one content chunk.</summary>
    public const ushort CmdFlagDf = 1 << 2;

    /// <summary>BLOCK_STATUS: one extent per context.</summary>
    public const ushort CmdFlagReqOne = 1 << 3;

    /// <summary>WRITE_ZEROES: fail at once unless fast (not advertised).</summary>
    public const ushort CmdFlagFastZero = 1 << 4;

    // Structured reply flags and types.

    /// <summary>The last chunk of a reply.</summary>
    public const ushort ReplyFlagDone = 1 << 0;

    /// <summary>No payload; ends a reply.</summary>
    public const ushort ReplyTypeNone = 0;

    /// <summary>Data at an offset.</summary>
    public const ushort ReplyTypeOffsetData = 1;

    /// <summary>Block status extents of one metadata context.</summary>
    public const ushort ReplyTypeBlockStatus = 5;

    /// <summary>An error with a message.</summary>
    public const ushort ReplyTypeError = (1 << 15) | 1;

    // Error values.

    /// <summary>Operation not permitted (write to a read-only export).</summary>
    public const uint EPERM = 1;

    /// <summary>Input/output error.</summary>
    public const uint EIO = 5;

    /// <summary>Cannot allocate memory.</summary>
    public const uint ENOMEM = 12;

    /// <summary>Invalid argument.</summary>
    public const uint EINVAL = 22;

    /// <summary>No space left (a write past the end).</summary>
    public const uint ENOSPC = 28;

    /// <summary>Value too large.</summary>
    public const uint EOVERFLOW = 75;

    /// <summary>Operation not supported.</summary>
    public const uint ENOTSUP = 95;

    /// <summary>The server is shutting down.</summary>
    public const uint ESHUTDOWN = 108;

    /// <summary>The <c>base:allocation</c> metadata context.</summary>
    public const string BaseAllocation = "base:allocation";

    /// <summary>Name of an option, for log lines.</summary>
    public static string OptionName(uint option) => option switch
    {
        OptExportName => "EXPORT_NAME",
        OptAbort => "ABORT",
        OptList => "LIST",
        OptStartTls => "STARTTLS",
        OptInfo => "INFO",
        OptGo => "GO",
        OptStructuredReply => "STRUCTURED_REPLY",
        OptListMetaContext => "LIST_META_CONTEXT",
        OptSetMetaContext => "SET_META_CONTEXT",
        11 => "EXTENDED_HEADERS",
        _ => $"option {option}",
    };

    /// <summary>Name of a command, for log lines.</summary>
    public static string CommandName(ushort command) => command switch
    {
        CmdRead => "READ",
        CmdWrite => "WRITE",
        CmdDisc => "DISC",
        CmdFlush => "FLUSH",
        CmdTrim => "TRIM",
        CmdCache => "CACHE",
        CmdWriteZeroes => "WRITE_ZEROES",
        CmdBlockStatus => "BLOCK_STATUS",
        _ => $"command {command}",
    };
}
