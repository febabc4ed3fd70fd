namespace Snapshot.Nbd;

/// <summary>What a connection's negotiation settled: the export, the reply form, the selected metadata contexts.</summary>
internal sealed class NbdSession
{
    /// <summary>The export in use (set when transmission starts).</summary>
    public NbdExport? Export { get; set; }

    /// <summary>Structured replies were negotiated.</summary>
    public bool Structured { get; set; }

    /// <summary>The client asked for no zeros after EXPORT_NAME.</summary>
    public bool NoZeroes { get; set; }

    /// <summary>The export name the last SET_META_CONTEXT named (canonical), or null.</summary>
    public string? MetaExport { get; set; }

    /// <summary>The contexts the last SET_META_CONTEXT selected, with their ids (1, 2, ...).</summary>
    public List<(uint Id, INbdMetaContext Context)> Contexts { get; } = new();

    /// <summary>The transmission flags sent for the export.</summary>
    public ushort TransmissionFlags { get; set; }

    /// <summary>The transmission flags of <paramref name="export"/> for this session.</summary>
    public ushort FlagsFor(NbdExport export)
    {
        ushort f = NbdProtocol.TxHasFlags | NbdProtocol.TxSendFlush | NbdProtocol.TxSendFua | NbdProtocol.TxSendTrim
            | NbdProtocol.TxSendWriteZeroes | NbdProtocol.TxCanMultiConn;
        if (export.ReadOnly) f |= NbdProtocol.TxReadOnly;
        if (Structured) f |= NbdProtocol.TxSendDf;
        return f;
    }
}
