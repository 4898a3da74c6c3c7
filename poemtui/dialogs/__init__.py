"""Modal dialogs of the workbench (a yes/no question, where to save poems, the first-run welcome): each a
`ModalScreen` whose answer comes back through `dismiss`; they share dialog.tcss."""
