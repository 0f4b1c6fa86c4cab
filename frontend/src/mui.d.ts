import '@mui/material/styles';

declare module '@mui/material/styles' {
  interface BreakpointOverrides {
    /** Wall screens (2560×1440 control-room displays). */
    wall: true;
  }
}
