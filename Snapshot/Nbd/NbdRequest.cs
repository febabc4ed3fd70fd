namespace Snapshot.Nbd;

/// <summary>
/// One transmission request from receipt to reply: the header fields, the payload buffer (a WRITE's data, or a READ's
/// data once read), and the outcome. Pooled per connection (at most the connection's in-flight bound exist); reset when
/// its reply has been sent.
/// </summary>
internal sealed class NbdRequest
{
    /// <summary>Command type.</summary>
    public ushort Type;

    /// <summary>Command flags.</summary>
    public ushort Flags;

    /// <summary>The client's handle, echoed in the reply.</summary>
    public ulong Handle;

    /// <summary>Byte offset.</summary>
    public ulong Offset;

    /// <summary>Byte length.</summary>
    public uint Length;

    /// <summary>Payload bytes charged to the connection's in-flight budget.</summary>
    public long Charged;

    /// <summary>Rented payload buffer (data starts at <see cref="NbdBufferPool.Headroom"/>), or null.</summary>
    public byte[]? Buffer;

    /// <summary>0, or the NBD error of the reply.</summary>
    public uint Error;

    /// <summary>Text sent with a structured error reply (and logged), or null.</summary>
    public string? ErrorMessage;

    /// <summary>BLOCK_STATUS: the extents of every selected context, those of one context consecutive.</summary>
    public readonly List<(uint ContextId, uint Length, uint Flags)> Extents = new(4);

    /// <summary>Clears the request for reuse (the buffer must have been returned).</summary>
    public void Reset()
    {
        Type = 0;
        Flags = 0;
        Handle = 0;
        Offset = 0;
        Length = 0;
        Charged = 0;
        Buffer = null;
        Error = 0;
        ErrorMessage = null;
        Extents.Clear();
    }

    /// <summary>Marks the request failed with <paramref name="error"/>.</summary>
    public void Fail(uint error, string message)
    {
        Error = error;
        ErrorMessage = message;
    }

    /// <summary>"WRITE 4096 bytes at 65536" for log lines.</summary>
    public string Describe() => $"{NbdProtocol.CommandName(Type)} of {Length} bytes at offset {Offset}";
}
